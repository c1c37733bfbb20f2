/**
 * `npm run demo`: the whole product on one machine. Finds (or starts) PostgreSQL, Redis and an
 * Orthanc PACS, prepares the database and a model, sends sample knee studies with DCMTK's storescu
 * (the modality), waits for the reports, and prints per knee the grade, the probabilities, where
 * the SR landed in Orthanc, and the pre-filled report text. Then it prints the review pages' address
 * and a demo radiologist account, and keeps serving until Ctrl-C (on a terminal, or with `--serve`;
 * `--exit` stops at once) so a person can review and sign the studies in a browser. Says
 * precisely what is missing when it cannot go on.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { join, resolve } from "node:path";
import { loadConfig } from "@kneegrade/config";
import { createDb } from "@kneegrade/db";
import { randomUid as newUid } from "@kneegrade/dicom";
import { reportText } from "@kneegrade/dicom-writers";
import { loadModel } from "@kneegrade/inference";
import { buildReportInput } from "@kneegrade/report-jobs";
import { addUser, setPassword } from "@kneegrade/review-data";
import {
  composeClinicalBilateral,
  SHARED_DATA as DEFAULT_SHARED_DATA,
  DEMO_PAIRS,
  demoCrops,
  radiographDicom,
} from "@kneegrade/sample-radiographs";
import { testModel } from "@kneegrade/test-models";
import { Redis } from "ioredis";
import pg from "pg";
import sharp from "sharp";

const ROOT = resolve(import.meta.dirname, "..");
/** ../shared/data (or $SHARED_DATA): real knee crops for the samples and the test model. */
const SHARED_DATA = process.env.SHARED_DATA ?? DEFAULT_SHARED_DATA;
const DEMO = join(ROOT, "var", "demo");
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const step = (s: string) => console.log(`\n${bold(`==> ${s}`)}`);
const fail = (s: string): never => {
  console.error(`\ndemo: ${s}`);
  process.exit(1);
};
const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;

const ORTHANC_HTTP = process.env.DEMO_ORTHANC_HTTP ?? "http://127.0.0.1:8042";
const env = {
  DATABASE_URL: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/kneegrade",
  REDIS_URL: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
  LISTENER_HOST: "127.0.0.1",
  LISTENER_PORT: process.env.DEMO_LISTENER_PORT ?? "11112",
  SPOOL_DIR: join(DEMO, "spool"),
  STUDY_STABLE_SECONDS: "2",
  PACS_HOST: "127.0.0.1",
  PACS_PORT: process.env.DEMO_PACS_PORT ?? "4242",
  PACS_AET: "ORTHANC",
  REVIEW_HOST: "127.0.0.1",
  REVIEW_PORT: process.env.DEMO_REVIEW_PORT ?? "8484",
  LOG_LEVEL: "info",
  CHECKPOINT_DISABLE: "1",
};

async function reachable(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      r(true);
    });
    s.once("error", () => r(false));
  });
}

async function ensurePostgres() {
  const url = new URL(env.DATABASE_URL);
  const admin = new pg.Client({
    connectionString: env.DATABASE_URL.replace(/\/[^/]*$/, "/postgres"),
  });
  try {
    await admin.connect();
  } catch {
    const version = existsSync("/etc/postgresql")
      ? readdirSync("/etc/postgresql").sort().at(-1)
      : undefined;
    if (!version || !has("pg_ctlcluster")) {
      fail(
        `PostgreSQL is not reachable at ${url.host} and is not installed here (apt-get install postgresql).`,
      );
    }
    console.log(`starting PostgreSQL ${version}`);
    execFileSync("pg_ctlcluster", ["--skip-systemctl-redirect", version!, "main", "start"], {
      stdio: "inherit",
    });
    await new Promise((r) => setTimeout(r, 1500));
    await admin.connect().catch((e: Error) => fail(`PostgreSQL still not reachable: ${e.message}`));
  }
  const db = url.pathname.slice(1);
  const exists = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [db]);
  if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${db}"`);
  await admin.end();
  execFileSync("npx", ["prisma", "migrate", "deploy"], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: "pipe",
  });
  console.log(`PostgreSQL ${url.host}/${db}: migrated`);
}

async function ensureRedis() {
  const ping = async () => {
    const r = new Redis(env.REDIS_URL, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    r.on("error", () => {});
    try {
      await r.connect();
      await r.ping();
      return true;
    } catch {
      return false;
    } finally {
      r.disconnect();
    }
  };
  if (await ping()) return console.log(`Redis ${env.REDIS_URL}: up`);
  if (!has("redis-server"))
    fail(
      `Redis is not reachable at ${env.REDIS_URL} and is not installed (apt-get install redis-server).`,
    );
  console.log("starting Redis");
  await mkdir("/tmp/kneegrade-demo-redis", { recursive: true });
  execFileSync("redis-server", [
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/tmp/kneegrade-demo-redis",
  ]);
  await new Promise((r) => setTimeout(r, 500));
  if (!(await ping())) fail("Redis did not start");
}

async function ensureOrthanc(): Promise<ChildProcess | undefined> {
  try {
    if ((await fetch(`${ORTHANC_HTTP}/system`)).ok) {
      console.log(`Orthanc ${ORTHANC_HTTP}: up (DICOM port ${env.PACS_PORT})`);
      return undefined;
    }
  } catch {
    // not running: start one
  }
  const bin = existsSync("/usr/sbin/Orthanc")
    ? "/usr/sbin/Orthanc"
    : has("Orthanc")
      ? "Orthanc"
      : undefined;
  if (!bin)
    fail(
      `no PACS: nothing answers at ${ORTHANC_HTTP} and Orthanc is not installed (apt-get install orthanc).`,
    );
  if (await reachable(Number(env.PACS_PORT)))
    fail(
      `port ${env.PACS_PORT} is taken by something that is not Orthanc's web API at ${ORTHANC_HTTP}.`,
    );
  const dir = join(DEMO, "orthanc");
  await mkdir(dir, { recursive: true });
  const port = new URL(ORTHANC_HTTP).port || "8042";
  await writeFile(
    join(dir, "orthanc.json"),
    JSON.stringify({
      Name: "kneegrade demo PACS",
      StorageDirectory: join(dir, "db"),
      IndexDirectory: join(dir, "db"),
      DicomAet: "ORTHANC",
      DicomPort: Number(env.PACS_PORT),
      HttpPort: Number(port),
      HttpBindAddress: "127.0.0.1",
      DicomBindAddress: "127.0.0.1",
      RemoteAccessAllowed: false,
      AuthenticationEnabled: false,
      DicomAlwaysAllowStore: true,
      DicomAlwaysAllowEcho: true,
      Plugins: [],
    }),
  );
  const child = spawn(bin!, [`--logdir=${dir}`, join(dir, "orthanc.json")], { stdio: "ignore" });
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${ORTHANC_HTTP}/system`)).ok) break;
    } catch {
      // starting
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log(
    `Orthanc started: ${ORTHANC_HTTP} (DICOM ORTHANC@127.0.0.1:${env.PACS_PORT}, storage ${dir})`,
  );
  return child;
}

async function modelDir(): Promise<{ dir: string; test: boolean }> {
  const configured = loadConfig({ ...process.env }).MODEL_DIR;
  const check = await loadModel(resolve(ROOT, configured));
  if (check.ok) {
    console.log(`model: ${configured} (status ${check.manifest.status})`);
    return { dir: resolve(ROOT, configured), test: false };
  }
  console.log(`no installed model (${check.reason}).`);
  console.log(
    bold(
      "Using a TEST MODEL built by the models/ toolkit (two tiny networks, under a minute on a CPU).",
    ),
  );
  console.log(
    'Its manifest says status "smoke": its grades are NOT clinical, and every result says so.',
  );
  try {
    return { dir: await testModel("test"), test: true };
  } catch (error) {
    return fail(
      "no model in MODEL_DIR, and a test model could not be built (it needs ../shared/data/knee-kl\n" +
        `and the Python packages .ci/run installs): ${(error as Error).message.split("\n")[0]}`,
    );
  }
}

/** A knee-like crop when ../shared/data is absent: the average of the training crops (the localiser's template), no real knee. */
async function syntheticCrop(path: string, seed: number) {
  const doc = JSON.parse(
    readFileSync(join(ROOT, "packages/knee/assets/knee-template.json"), "utf8"),
  ) as {
    templates: { size: number; grades: number[]; mean: number[] }[];
  };
  const t = doc.templates.find((x) => x.size === 64 && x.grades.length === 5)!;
  let a = seed;
  const noise = () => {
    a = (a * 1103515245 + 12345) >>> 0;
    return (a / 2 ** 32 - 0.5) * 12;
  };
  const grey = Uint8Array.from(t.mean, (v) =>
    Math.max(0, Math.min(255, Math.round(v * 255 + noise()))),
  );
  await sharp(grey, { raw: { width: 64, height: 64, channels: 1 } })
    .resize(224, 224, { kernel: "cubic" })
    .toColourspace("b-w")
    .png()
    .toFile(path);
}

async function samples(): Promise<
  { uid: string; path: string; origin: string; composedKnees: number }[]
> {
  const out = join(DEMO, "samples");
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  const val = join(SHARED_DATA, "knee-kl", "val");
  const fromData = existsSync(val);
  const fromDataCrops = fromData ? demoCrops(val) : [];
  const studies = [];
  for (const [n, [a, b]] of DEMO_PAIRS.entries()) {
    let crops: [string, string];
    if (fromData) crops = fromDataCrops[n]!;
    else {
      crops = [join(out, `synthetic-${n}-r.png`), join(out, `synthetic-${n}-l.png`)];
      await syntheticCrop(crops[0], 2 * n + 1);
      await syntheticCrop(crops[1], 2 * n + 2);
    }
    // As a department sends it: both legs, raw contrast, collimation, side markers.
    const r = await composeClinicalBilateral(crops, n);
    const uid = newUid();
    const path = join(out, `study-${n + 1}.dcm`);
    await writeFile(
      path,
      radiographDicom(r, {
        studyInstanceUid: uid,
        accessionNumber: `SYNTH000${n + 1}`,
        photometric: n ? "MONOCHROME1" : "MONOCHROME2",
      }),
    );
    studies.push({
      uid,
      path,
      origin: fromData ? `KL ${a} and KL ${b} crops from knee-kl/val` : "synthetic knees",
      composedKnees: crops.length,
    });
  }
  console.log(
    fromData
      ? "Sample studies generated by kneegrade from ../shared/data/knee-kl: real knee crops (OAI, CC BY 4.0)\n" +
          "composed into bilateral standing AP DX radiographs (both legs, synthetic shafts and soft tissue, raw\n" +
          "contrast, collimation, side markers); no real patient."
      : "Sample studies GENERATED BY KNEEGRADE (no ../shared/data here): synthetic knees drawn from the average\n" +
          "of the training crops, composed into full-size bilateral DX radiographs; no real knee, no real patient.",
  );
  return studies;
}

async function main() {
  for (const [cmd, pkg] of [
    ["storescu", "dcmtk"],
    ["python3", "python3 (and the packages .ci/run installs) to build a test model"],
  ]) {
    if (!has(cmd!)) fail(`'${cmd}' is missing: install ${pkg}.`);
  }
  step("local services");
  await ensurePostgres();
  await ensureRedis();
  const orthanc = await ensureOrthanc();
  step("model");
  const model = await modelDir();
  step("sample studies");
  const studies = await samples();

  step(
    `starting kneegrade (listener on ${env.LISTENER_PORT}, worker, reporter → ORTHANC@127.0.0.1:${env.PACS_PORT}, review pages on ${env.REVIEW_PORT})`,
  );
  await mkdir(DEMO, { recursive: true });
  const serveEnv = {
    ...process.env,
    ...env,
    MODEL_DIR: model.dir,
    ALLOW_TEST_MODEL: model.test ? "1" : "0",
  };
  const log = join(DEMO, "serve.log");
  const serve = spawn(
    "sh",
    ["-c", `exec node packages/cli/bin/kneegrade.js serve >"${log}" 2>&1`],
    {
      cwd: ROOT,
      env: serveEnv,
    },
  );
  const stopAll = () => {
    serve.kill("SIGTERM");
    orthanc?.kill("SIGTERM");
  };
  process.on("SIGINT", () => {
    stopAll();
    process.exit(130);
  });
  for (let i = 0; i < 120 && !(await reachable(Number(env.LISTENER_PORT))); i++) {
    if (serve.exitCode !== null) fail(`kneegrade serve stopped: see ${log}`);
    await new Promise((r) => setTimeout(r, 250));
  }

  step("sending the studies with DCMTK storescu (as a modality would)");
  for (const s of studies) {
    execFileSync("storescu", [
      "-aet",
      "DEMO_MODALITY",
      "-aec",
      "KNEEGRADE",
      "127.0.0.1",
      env.LISTENER_PORT,
      s.path,
    ]);
    console.log(`sent ${s.path} (study ${s.uid}; ${s.origin})`);
  }

  step("waiting for grading and for the reports to land in the PACS");
  const db = createDb(env.DATABASE_URL);
  const deadline = Date.now() + 180_000;
  for (;;) {
    const rows = await db.study.findMany({
      where: { studyInstanceUid: { in: studies.map((s) => s.uid) } },
    });
    const done = rows.filter((r) => ["REPORTED", "FAILED", "REFUSED"].includes(r.status));
    if (done.length === studies.length) break;
    if (Date.now() > deadline) {
      stopAll();
      fail(
        `timed out: ${rows.map((r) => `${r.studyInstanceUid} ${r.status}`).join(", ")} (see ${log})`,
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }

  step("results");
  const config = loadConfig({ ...process.env, ...env });
  for (const s of studies) {
    const study = await db.study.findUniqueOrThrow({
      where: { studyInstanceUid: s.uid },
      include: { jobs: { orderBy: { revision: "desc" }, take: 1 }, reports: true },
    });
    console.log(
      `\nStudy ${s.uid}: ${study.status}${study.statusReason ? ` (${study.statusReason})` : ""}`,
    );
    const job = study.jobs[0];
    if (!job) continue;
    const results = await db.kneeResult.findMany({ where: { gradingJobId: job.id } });
    // The demo composed the radiograph, so it knows how many knees a reader should see.
    const kneesFound = results.length;
    console.log(
      `  knees found: ${kneesFound} of the ${s.composedKnees} composed${kneesFound < s.composedKnees ? bold(" — a knee was missed") : ""}`,
    );
    for (const r of results) {
      const p = (r.probabilities as number[]).map((v) => `${(v * 100).toFixed(0)}%`).join(" / ");
      console.log(
        `  ${r.laterality.toLowerCase().padEnd(5)} knee: KL ${r.klGrade}   P(KL0..4) ${p}`,
      );
    }
    for (const rep of study.reports) {
      const found = (await (
        await fetch(`${ORTHANC_HTTP}/tools/lookup`, { method: "POST", body: rep.sopInstanceUid })
      ).json()) as { Path: string }[];
      const kind = rep.sopClassUid.endsWith(".88.33")
        ? "SR"
        : rep.sopClassUid.endsWith(".7")
          ? "SC"
          : "text SR";
      console.log(
        `  ${kind}: ${found[0] ? `${ORTHANC_HTTP}${found[0].Path}` : "not in the PACS yet"}`,
      );
    }
    const text = reportText(await buildReportInput(db, job.id, config));
    console.log(`\n  Findings:\n    ${text.findings.replace(/\n/g, "\n    ")}`);
    console.log(`  Impression:\n    ${text.impression.replace(/\n/g, "\n    ")}`);
  }
  // A demo radiologist with a fresh random password each run (never a fixed, guessable one).
  const account = { username: "demo", password: randomBytes(12).toString("base64url") };
  if (await db.user.findUnique({ where: { username: account.username } })) {
    await setPassword(db, account.username, account.password);
  } else {
    await addUser(db, {
      ...account,
      role: "radiologist",
      displayName: "Demo^Radiologist",
      organisation: "kneegrade demo",
    });
  }
  await db.$disconnect();
  console.log(
    `\nOrthanc's viewer: ${ORTHANC_HTTP}/app/explorer.html  ·  logs: ${log}  ·  \`npx kneegrade status\` for the totals`,
  );
  if (model.test) console.log(bold("Grades above come from a TEST MODEL: not clinical."));
  step("radiologist review");
  console.log(`review pages: http://127.0.0.1:${env.REVIEW_PORT}/`);
  console.log(`demo account: user ${account.username}, password ${account.password} (radiologist)`);
  console.log("keys on a study: 0-4 grade the highlighted knee, N not gradable, Enter signs");
  const keep = process.argv.includes("--serve") || process.stdout.isTTY;
  if (!keep || process.argv.includes("--exit")) {
    stopAll();
    process.exit(0);
  }
  console.log(bold("kneegrade keeps running for the review: Ctrl-C stops it."));
}

await main();
