/**
 * `npm run bench:scale`: studies per minute with 1, 2 and 3 worker processes on one queue (each
 * `kneegrade serve --only worker` in its own working directory, one shared spool, one listener
 * process), the toolkit's test model, small bilateral radiographs (tests/helpers/small-studies.ts).
 * The baseline is the 1-worker run of the same invocation; the ratio says what each added worker
 * buys on this machine (with N cores, expect it to flatten once workers × WORKER_CONCURRENCY ×
 * INFERENCE_THREADS passes N).
 *
 *   npx tsx tests/bench/scale.bench.ts [--studies 24] [--workers 1,2,3] [--concurrency 2]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createDb } from "@kneegrade/db";
import { testModel } from "@kneegrade/test-models";
import globalSetup from "../global-setup.ts";
import { configEnv } from "../helpers/cli.ts";
import { storescu } from "../helpers/dcmtk.ts";
import { cleanupConfig, resetDb, testConfig } from "../helpers/env.ts";
import { gradedBy, startScaledOut } from "../helpers/scale.ts";
import { writeSmallStudies } from "../helpers/small-studies.ts";

const { values } = parseArgs({
  options: {
    studies: { type: "string", default: "24" },
    workers: { type: "string", default: "1,2,3" },
    concurrency: { type: "string", default: "2" },
  },
});
const studies = Number(values.studies);
const counts = values.workers.split(",").map(Number);

await globalSetup(); // the test database exists and is migrated (TEST_DATABASE_URL to use another)
const modelDir = await testModel("test");
const work = await mkdtemp(join(tmpdir(), "kneegrade-bench-scale-"));
const rows: { workers: number; perMinute: number; seconds: number; split: number[] }[] = [];
try {
  for (const n of counts) {
    const config = await testConfig({ LISTENER_PORT: "0" });
    const db = createDb(config.DATABASE_URL);
    await resetDb(db);
    const files = await writeSmallStudies(join(work, `run-${n}`), studies);
    const cluster = await startScaledOut(
      {
        ...configEnv(config),
        MODEL_DIR: modelDir,
        ALLOW_TEST_MODEL: "1",
        INFERENCE_THREADS: "1",
        WORKER_CONCURRENCY: values.concurrency,
        LOG_LEVEL: "info",
      },
      n,
    );
    try {
      const start = Date.now();
      const sent = await storescu(
        { port: cluster.listenerPort },
        files.map((f) => f.path),
      );
      if (sent.code !== 0) throw new Error(sent.stderr);
      const deadline = Date.now() + 1_800_000;
      for (;;) {
        const done = await db.gradingJob.count({ where: { status: "COMPLETED" } });
        if (done === studies) break;
        if (Date.now() > deadline) throw new Error(`only ${done} of ${studies} graded`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const last = await db.gradingJob.aggregate({ _max: { finishedAt: true } });
      // From the first byte sent to the last study graded; STUDY_STABLE_SECONDS (1 s) included.
      const seconds = (last._max.finishedAt!.getTime() - start) / 1000;
      rows.push({
        workers: n,
        perMinute: (studies / seconds) * 60,
        seconds,
        split: cluster.workers.map((w) => gradedBy(w).length),
      });
    } finally {
      await cluster.stop();
      await db.$disconnect();
      await cleanupConfig(config);
    }
  }
} finally {
  await rm(work, { recursive: true, force: true });
}

const base = rows.find((r) => r.workers === 1) ?? rows[0]!;
console.log(
  `Scale-out on this machine (${cpus().length} cores, load average ${loadavg()[0]!.toFixed(1)} at the end): ${studies} bilateral studies (720 × 600 px, 2 knees each) sent at once with storescu to one listener process; N worker processes (WORKER_CONCURRENCY ${values.concurrency}, INFERENCE_THREADS 1, the toolkit's test model); from the first byte sent to the last study graded.`,
);
console.log("| workers | studies/min | seconds | studies per worker | ratio vs 1 worker |");
console.log("| --- | --- | --- | --- | --- |");
for (const r of rows) {
  console.log(
    `| ${r.workers} | ${r.perMinute.toFixed(1)} | ${r.seconds.toFixed(1)} | ${r.split.join(" / ")} | ${(r.perMinute / base.perMinute).toFixed(2)} |`,
  );
}
process.exit(0);
