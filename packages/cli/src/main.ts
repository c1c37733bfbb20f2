/** The `kneegrade` command line. Each subcommand validates the configuration before it connects. */
import { type Config, ConfigError, loadConfig } from "@kneegrade/config";
import { createDb } from "@kneegrade/db";
import { cEcho, collectFiles, cStoreFiles, type DicomPeer } from "@kneegrade/dicom";
import { createLogger } from "@kneegrade/log";
import { redeliver } from "@kneegrade/report-jobs";
import { addUser, disableUser, ROLES, setPassword } from "@kneegrade/review-data";
import { Command, Option } from "commander";
import {
  evaluateFolder,
  evaluationDocument,
  formatEvaluation,
  formatGraded,
  gradeFiles,
  NOTICE,
  openModel,
  TEST_MODEL_NOTICE,
  writeEvaluationCharts,
} from "./grade.ts";
import { parseOnly, serve } from "./serve.ts";
import { collectStatus, formatStatus } from "./status.ts";

function config(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`kneegrade: ${error.message}`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
}

interface PeerOptions {
  pacs?: boolean;
  host?: string;
  port?: string;
  aet?: string;
  callingAet?: string;
  timeout: string;
}

/** The listener by default; the PACS with --pacs; anything with --host/--port/--aet. */
function peer(c: Config, o: PeerOptions): DicomPeer {
  const base = o.pacs
    ? { host: c.PACS_HOST, port: c.PACS_PORT, calledAet: c.PACS_AET }
    : {
        host: c.LISTENER_HOST === "0.0.0.0" ? "127.0.0.1" : c.LISTENER_HOST,
        port: c.LISTENER_PORT,
        calledAet: c.LISTENER_AET,
      };
  return {
    host: o.host ?? base.host,
    port: o.port ? Number(o.port) : base.port,
    calledAet: o.aet ?? base.calledAet,
    callingAet: o.callingAet ?? "KNEEGRADE_SCU",
    timeoutMs: Number(o.timeout) * 1000,
  };
}

function withPeerOptions(cmd: Command): Command {
  return cmd
    .option(
      "--pacs",
      "talk to the configured PACS (PACS_HOST/PACS_PORT/PACS_AET) instead of the listener",
    )
    .option("--host <host>", "peer host")
    .option("--port <port>", "peer port")
    .option("--aet <aet>", "called AE title")
    .option("--calling-aet <aet>", "our AE title", "KNEEGRADE_SCU")
    .option("--timeout <seconds>", "give up after this many seconds", "30");
}

const program = new Command()
  .name("kneegrade")
  .description("Knee osteoarthritis grading for every knee radiograph, as a DICOM service");

program
  .command("serve")
  .description(
    "run the listener, worker, reporter and review pages in this process, with one ops server (METRICS_PORT)",
  )
  .addOption(new Option("--only <services>", "comma list of listener,worker,reporter,review"))
  .action(async (o: { only?: string }) => {
    const c = config();
    const log = createLogger("kneegrade", c.LOG_LEVEL);
    try {
      await serve(c, parseOnly(o.only), log);
    } catch (error) {
      log.fatal(
        { event: "serve.failed", err: (error as Error).message },
        "kneegrade could not start",
      );
      process.exit(1);
    }
  });

withPeerOptions(
  program.command("echo").description("C-ECHO the listener (or the PACS with --pacs)"),
).action(async (o: PeerOptions) => {
  const p = peer(config(), o);
  const outcome = await cEcho(p);
  const ok = outcome.status === 0;
  console.log(
    `${ok ? "ok" : "failed"}: C-ECHO ${p.calledAet}@${p.host}:${p.port}${ok ? "" : ` (${outcome.error})`}`,
  );
  process.exit(ok ? 0 : 1);
});

withPeerOptions(
  program
    .command("send")
    .description("C-STORE files or directories to the listener (or the PACS with --pacs)")
    .argument("<paths...>", "DICOM files or directories"),
).action(async (paths: string[], o: PeerOptions) => {
  const p = peer(config(), o);
  const outcomes = await cStoreFiles(p, paths);
  let failed = 0;
  for (const r of outcomes) {
    const ok = r.status === 0;
    if (!ok) failed += 1;
    const status = r.status === null ? "" : ` status 0x${r.status.toString(16).padStart(4, "0")}`;
    console.log(`${ok ? "stored" : "failed"}: ${r.item}${status}${r.error ? ` (${r.error})` : ""}`);
  }
  console.log(
    `${outcomes.length - failed} of ${outcomes.length} sent to ${p.calledAet}@${p.host}:${p.port}`,
  );
  process.exit(failed === 0 && outcomes.length > 0 ? 0 : 1);
});

program
  .command("status")
  .description("studies, instances, skipped studies, jobs per queue and state, deliveries")
  .option("--json", "machine-readable output (a stable interface)")
  .option("--recent <n>", "how many recent studies to list", "10")
  .action(async (o: { json?: boolean; recent: string }) => {
    const c = config();
    const db = createDb(c.DATABASE_URL);
    try {
      const report = await collectStatus(db, c, Number(o.recent));
      console.log(o.json ? JSON.stringify(report, null, 2) : formatStatus(report));
    } finally {
      await db.$disconnect();
    }
  });

program
  .command("redeliver")
  .description(
    "send a study's report objects to the PACS again (after a dead letter, or on request)",
  )
  .argument("<study>", "Study Instance UID")
  .action(async (study: string) => {
    const c = config();
    const db = createDb(c.DATABASE_URL);
    try {
      const r = await redeliver(db, c, study);
      console.log(
        `queued: ${r.deliveries} object(s) of revision ${r.revision}${r.signatures ? ` and ${r.signatures} signed report(s) not written yet` : ""} for ${c.PACS_AET}@${c.PACS_HOST}:${c.PACS_PORT} (job ${r.jobId})`,
      );
    } catch (error) {
      console.error(`kneegrade: ${(error as Error).message}`);
      process.exitCode = 1;
    } finally {
      await db.$disconnect();
    }
  });

/** The password: from standard input (first line) with --password-stdin, else asked for. */
async function readPassword(fromStdin: boolean): Promise<string> {
  const { createInterface } = await import("node:readline/promises");
  const rl = createInterface({
    input: process.stdin,
    output: process.stderr,
    terminal: !fromStdin,
  });
  try {
    if (fromStdin) {
      for await (const line of rl) return line;
      return "";
    }
    const first = await rl.question("password: ");
    const again = await rl.question("again: ");
    if (first !== again) throw new Error("the passwords differ");
    return first;
  } finally {
    rl.close();
  }
}

async function withDb(run: (db: ReturnType<typeof createDb>) => Promise<string>) {
  const db = createDb(config().DATABASE_URL);
  try {
    console.log(await run(db));
  } catch (error) {
    console.error(`kneegrade: ${(error as Error).message.split("\n").pop()}`);
    process.exitCode = 1;
  } finally {
    await db.$disconnect();
  }
}

const user = program.command("user").description("accounts of the review pages");
user
  .command("add")
  .description("create an account (password asked for, or read from stdin)")
  .argument("<username>", "login name: lower-case letters, digits, . _ -")
  .requiredOption("--role <role>", `one of ${ROLES.join(", ")}`)
  .requiredOption("--name <name>", 'name written into signed reports, DICOM PN: "Family^Given"')
  .requiredOption("--organisation <name>", "organisation written into signed reports")
  .option("--password-stdin", "read the password from the first line of standard input")
  .action(
    async (
      username: string,
      o: { role: string; name: string; organisation: string; passwordStdin?: boolean },
    ) =>
      withDb(async (db) => {
        await addUser(db, {
          username,
          role: o.role as (typeof ROLES)[number],
          displayName: o.name,
          organisation: o.organisation,
          password: await readPassword(Boolean(o.passwordStdin)),
        });
        return `added: ${username} (${o.role})`;
      }),
  );
user
  .command("passwd")
  .description("set an account's password (its sessions end)")
  .argument("<username>")
  .option("--password-stdin", "read the password from the first line of standard input")
  .action(async (username: string, o: { passwordStdin?: boolean }) =>
    withDb(async (db) => {
      await setPassword(db, username, await readPassword(Boolean(o.passwordStdin)));
      return `password changed: ${username}`;
    }),
  );
user
  .command("disable")
  .description("stop an account from logging in (its sessions end)")
  .argument("<username>")
  .action(async (username: string) =>
    withDb(async (db) => {
      await disableUser(db, username);
      return `disabled: ${username}`;
    }),
  );

interface ModelCliOptions {
  modelDir?: string;
  providers?: string;
  threads?: string;
  allowTestModel?: boolean;
  json?: boolean;
}

function withModelOptions(cmd: Command): Command {
  return cmd
    .option("--model-dir <dir>", "model folder with manifest.json (default: MODEL_DIR)")
    .option("--providers <list>", "execution providers in order (default: INFERENCE_PROVIDERS)")
    .option("--threads <n>", "onnxruntime threads (default: INFERENCE_THREADS)")
    .option(
      "--allow-test-model",
      'accept a model with status "smoke" (tests and demos; also ALLOW_TEST_MODEL=1)',
    )
    .option("--json", "machine-readable output (a stable interface)");
}

async function withModel<T>(
  o: ModelCliOptions,
  run: (m: Awaited<ReturnType<typeof openModel>>) => Promise<T>,
): Promise<T> {
  const c = config();
  const log = createLogger(
    "kneegrade",
    o.json ? "silent" : c.LOG_LEVEL === "info" ? "warn" : c.LOG_LEVEL,
  );
  let opened: Awaited<ReturnType<typeof openModel>>;
  try {
    opened = await openModel(
      {
        modelDir: o.modelDir ?? c.MODEL_DIR,
        providers: o.providers
          ? o.providers.split(",").map((s) => s.trim())
          : c.INFERENCE_PROVIDERS,
        threads: o.threads ? Number(o.threads) : c.INFERENCE_THREADS,
        maxBatch: c.INFERENCE_MAX_BATCH,
        allowTestModel: Boolean(o.allowTestModel) || c.ALLOW_TEST_MODEL,
      },
      log,
    );
  } catch (error) {
    console.error(`kneegrade: no usable model: ${(error as Error).message}`);
    process.exit(2);
  }
  try {
    return await run(opened);
  } finally {
    await opened.close();
  }
}

withModelOptions(
  program
    .command("grade")
    .description(
      "grade DICOM radiographs (and PNG/JPEG images taken as already-cropped knees) offline",
    )
    .argument("<paths...>", "files or directories"),
).action(async (paths: string[], o: ModelCliOptions) => {
  const failed = await withModel(o, async ({ predictor, model }) => {
    const files = await collectFiles(paths);
    if (files.length === 0) {
      console.error("kneegrade: no files to grade");
      return true;
    }
    const results = await gradeFiles(files, predictor);
    if (o.json) {
      const notices = [NOTICE, ...(model.testModel ? [TEST_MODEL_NOTICE] : [])];
      console.log(JSON.stringify({ schemaVersion: 1, model, notices, results }, null, 2));
    } else {
      console.log(formatGraded(results, model));
    }
    return results.some((r) => r.outcome === "FAILED");
  });
  process.exit(failed ? 1 : 0);
});

withModelOptions(
  program
    .command("evaluate")
    .description(
      "accuracy, QWK, MAE, ECE, reliability bins and confusion matrix on a <dir>/<grade>/*.png folder",
    )
    .argument("<dir>", "folder laid out <grade>/*.png, grade 0-4")
    .option("--limit-per-grade <n>", "only the first n images (sorted) of each grade")
    .option("--png-dir <dir>", "also write confusion.png and reliability.png there"),
).action(async (dir: string, o: ModelCliOptions & { limitPerGrade?: string; pngDir?: string }) => {
  await withModel(o, async (opened) => {
    const { metrics } = await evaluateFolder(dir, opened.ensemble, {
      ...(o.limitPerGrade ? { limitPerGrade: Number(o.limitPerGrade) } : {}),
    });
    const charts = o.pngDir
      ? await writeEvaluationCharts(o.pngDir, metrics, opened.model)
      : undefined;
    console.log(
      o.json
        ? JSON.stringify(evaluationDocument(dir, opened, metrics, charts), null, 2)
        : formatEvaluation(metrics, opened.model, charts),
    );
  });
  process.exit(0);
});

await program.parseAsync();
