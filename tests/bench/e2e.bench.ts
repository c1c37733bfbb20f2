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
import { composeBilateral, radiographDicom, testModel } from "@kneegrade/samples";
import { startWorker } from "@kneegrade/worker";
import globalSetup from "../global-setup.ts";
import { storescu } from "../helpers/dcmtk.ts";
import { startHarness } from "../helpers/env.ts";
import { startOrthanc } from "../helpers/orthanc.ts";
import { SAMPLE_CROPS } from "../helpers/small-studies.ts";
import { newUid } from "../helpers/studies.ts";

const { values } = parseArgs({
  options: { studies: { type: "string", default: "12" }, stable: { type: "string", default: "1" } },
});
const studies = Number(values.studies);
const stable = Number(values.stable);

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
    const r = await composeBilateral([SAMPLE_CROPS[i % 5]!, SAMPLE_CROPS[(i + 2) % 5]!], i);
    const uid = newUid();
    const path = join(work, `${i}.dcm`);
    await writeFile(path, radiographDicom(r, { studyInstanceUid: uid }));
    files.push({ uid, path });
  }
  const waitReported = async (batch: typeof files) => {
    const deadline = Date.now() + 600_000;
    for (;;) {
      const reported = await h.db.study.count({
        where: { studyInstanceUid: { in: batch.map((f) => f.uid) }, status: "REPORTED" },
      });
      if (reported === batch.length) return;
      if (Date.now() > deadline)
        throw new Error(`only ${reported} of ${batch.length} studies reported`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const send = async (f: (typeof files)[number]) => {
    const sent = await storescu(h.target, [f.path]);
    if (sent.code !== 0) throw new Error(sent.stderr);
  };
  /** Latency per study (stable → SR stored in the PACS) and the last SR's store time. */
  const measure = async (batch: typeof files) => {
    const rows = await h.db.study.findMany({
      where: { studyInstanceUid: { in: batch.map((f) => f.uid) } },
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
    return { p50: q(0.5), p95: q(0.95), lastSent };
  };
  // 1. One study at a time: the latency of an idle pipeline.
  const single = files.slice(0, 3);
  for (const f of single) {
    await send(f);
    await waitReported([f]);
  }
  const idle = await measure(single);
  // 2. The rest at once: throughput, and latency behind a queue.
  const burst = files.slice(3);
  const start = Date.now();
  for (const f of burst) await send(f);
  await waitReported(burst);
  const loaded = await measure(burst);
  const minutes = (loaded.lastSent - start) / 60_000;
  console.log(
    `End to end on this machine (${studies} bilateral studies, 2 knees each; STUDY_STABLE_SECONDS ${stable}, WORKER_CONCURRENCY 2, the toolkit's test model):`,
  );
  console.log("| run | studies | studies/min | p50 ms (stable → SR stored in PACS) | p95 ms |");
  console.log("| --- | --- | --- | --- | --- |");
  console.log(
    `| one at a time | ${single.length} | - | ${idle.p50.toFixed(0)} | ${idle.p95.toFixed(0)} |`,
  );
  console.log(
    `| all at once | ${burst.length} | ${(burst.length / minutes).toFixed(1)} | ${loaded.p50.toFixed(0)} | ${loaded.p95.toFixed(0)} |`,
  );
} finally {
  await reporter.close();
  await worker.close();
  await h.stop();
  await orthanc.stop();
  await rm(work, { recursive: true, force: true });
}
process.exit(0);
