/**
 * `npm run bench:e2e`: the whole pipeline on this machine — storescu → listener → worker → reporter
 * → Orthanc — with the toolkit's test model (the speed of the product's four-member ensemble is in
 * `bench:infer`). Prints studies per minute and the p50/p95 latency from the moment a study is
 * complete (its last instance received + STUDY_STABLE_SECONDS) to its SR stored in the PACS (the
 * PACS's C-STORE response, `Delivery.sentAt`).
 *
 *   npx tsx tests/bench/e2e.bench.ts [--studies 12] [--stable 1]
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createLogger } from "@kneegrade/log";
import { startReporter } from "@kneegrade/reporter";
import { startWorker } from "@kneegrade/worker";
import globalSetup from "../global-setup.ts";
import { storescu } from "../helpers/dcmtk.ts";
import { startHarness } from "../helpers/env.ts";
import { startOrthanc } from "../helpers/orthanc.ts";
import { SHARED_DATA } from "../helpers/paths.ts";
import { composeRadiograph, radiographDicom } from "../helpers/radiographs.ts";
import { newUid } from "../helpers/studies.ts";
import { testModel } from "../helpers/test-model.ts";

const { values } = parseArgs({
  options: { studies: { type: "string", default: "12" }, stable: { type: "string", default: "1" } },
});
const studies = Number(values.studies);
const stable = Number(values.stable);
const VAL = `${SHARED_DATA}knee-kl/val/`;
const CROPS = [
  "0/9034812R.png",
  "1/9003380R.png",
  "2/9023348R.png",
  "3/9107980R.png",
  "4/9511862R.png",
];

const quiet = createLogger("bench", "silent");
await globalSetup(); // the test database exists and is migrated (set TEST_DATABASE_URL to use another)
const work = await mkdtemp(join(tmpdir(), "kneegrade-bench-e2e-"));
const orthanc = await startOrthanc();
const h = await startHarness({
  STUDY_STABLE_SECONDS: String(stable),
  MODEL_DIR: await testModel("test"),
  ALLOW_TEST_MODEL: "1",
  PACS_HOST: "127.0.0.1",
  PACS_PORT: String(orthanc.dicomPort),
  PACS_AET: orthanc.aet,
  WORKER_CONCURRENCY: "2",
});
const worker = await startWorker(h.config, h.db, quiet);
const reporter = await startReporter(h.config, h.db, quiet);
try {
  const files: { uid: string; path: string }[] = [];
  for (let i = 0; i < studies; i++) {
    const r = await composeRadiograph({
      widthMm: 360,
      heightMm: 300,
      spacingMm: 0.15,
      seed: i,
      knees: [
        { png: `${VAL}${CROPS[i % 5]}`, xMm: 95, yMm: 150, sideMm: 90 },
        { png: `${VAL}${CROPS[(i + 2) % 5]}`, xMm: 265, yMm: 150, sideMm: 90 },
      ],
    });
    const uid = newUid();
    const path = join(work, `${i}.dcm`);
    await writeFile(path, radiographDicom(r, { studyInstanceUid: uid }));
    files.push({ uid, path });
  }
  const start = Date.now();
  for (const f of files) {
    const sent = await storescu(h.target, [f.path]);
    if (sent.code !== 0) throw new Error(sent.stderr);
  }
  const deadline = Date.now() + 600_000;
  for (;;) {
    const reported = await h.db.study.count({
      where: { studyInstanceUid: { in: files.map((f) => f.uid) }, status: "REPORTED" },
    });
    if (reported === files.length) break;
    if (Date.now() > deadline)
      throw new Error(`only ${reported} of ${files.length} studies reported`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const rows = await h.db.study.findMany({
    where: { studyInstanceUid: { in: files.map((f) => f.uid) } },
    include: { reports: { include: { deliveries: true } } },
  });
  const latencies = rows
    .map((s) => {
      const sr = s.reports.find((r) => r.sopClassUid === "1.2.840.10008.5.1.4.1.1.88.33");
      const sent = sr?.deliveries[0]?.sentAt;
      return sent ? sent.getTime() - (s.lastReceivedAt.getTime() + stable * 1000) : Number.NaN;
    })
    .sort((a, b) => a - b);
  const lastSent = Math.max(
    ...rows.flatMap((s) =>
      s.reports.flatMap((r) => r.deliveries.map((d) => d.sentAt?.getTime() ?? 0)),
    ),
  );
  const q = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
  const minutes = (lastSent - start) / 60_000;
  console.log(
    `End to end on this machine: ${studies} bilateral studies (2 knees each), STUDY_STABLE_SECONDS ${stable}, WORKER_CONCURRENCY 2, test model`,
  );
  console.log(
    "| studies/min | p50 ms (stable → SR in PACS) | p95 ms | first send → last SR stored |",
  );
  console.log("| --- | --- | --- | --- |");
  console.log(
    `| ${(studies / minutes).toFixed(1)} | ${q(0.5).toFixed(0)} | ${q(0.95).toFixed(0)} | ${((lastSent - start) / 1000).toFixed(1)} s |`,
  );
} finally {
  await reporter.close();
  await worker.close();
  await h.stop();
  await orthanc.stop();
  await rm(work, { recursive: true, force: true });
}
process.exit(0);
