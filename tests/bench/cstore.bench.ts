/**
 * `npm run bench:cstore`: does grading delay the listener? One process runs the listener and the
 * worker service (as `kneegrade serve` does) with the shipped model; 8 bilateral studies are sent
 * and, while they are graded, a probe stores a small non-knee instance over and over (association,
 * C-STORE, release) and times each round trip. Two runs in the same process: the baseline with the
 * worker on the main thread (SERVE_WORKER_THREAD=0) and the worker in its own thread
 * (the default). Prints p50/p99 of the probe's C-STORE latency and the ratio to the baseline.
 *
 *   npx tsx tests/bench/cstore.bench.ts [--studies 8]
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { cStoreFiles } from "@kneegrade/dicom";
import { createLogger } from "@kneegrade/log";
import {
  composeBilateral,
  composeRadiograph,
  radiographDicom,
} from "@kneegrade/sample-radiographs";
import { type RunningWorker, startWorker, startWorkerThread } from "@kneegrade/worker";
import globalSetup from "../global-setup.ts";
import { storescu } from "../helpers/dcmtk.ts";
import { startHarness } from "../helpers/env.ts";
import { SAMPLE_CROPS } from "../helpers/small-studies.ts";
import { newUid } from "../helpers/studies.ts";

const { values } = parseArgs({ options: { studies: { type: "string", default: "8" } } });
const studies = Number(values.studies);
const quiet = createLogger("bench", "silent");
await globalSetup();
const work = await mkdtemp(join(tmpdir(), "kneegrade-bench-cstore-"));
const h = await startHarness({ STUDY_STABLE_SECONDS: "1", WORKER_CONCURRENCY: "2" });
const peer = {
  host: "127.0.0.1",
  port: h.target.port,
  calledAet: h.config.LISTENER_AET,
  callingAet: "PROBE",
};
const probeImage = await composeRadiograph({
  widthMm: 60,
  heightMm: 60,
  spacingMm: 0.5,
  seed: 7,
  knees: [],
});

const quantile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;

async function run(mode: "main thread" | "worker thread") {
  const files: string[] = [];
  const uids: string[] = [];
  for (let i = 0; i < studies; i++) {
    const r = await composeBilateral([SAMPLE_CROPS[i % 5]!, SAMPLE_CROPS[(i + 2) % 5]!], i);
    const uid = newUid();
    const path = join(work, `${mode.replace(" ", "-")}-${i}.dcm`);
    await writeFile(path, radiographDicom(r, { studyInstanceUid: uid }));
    files.push(path);
    uids.push(uid);
  }
  const worker: RunningWorker =
    mode === "worker thread"
      ? await startWorkerThread(h.config, quiet)
      : await startWorker(h.config, h.db, quiet);
  if (!worker.model.ok) throw new Error(`no usable model: ${worker.model.reason}`);
  const sent = await storescu(h.target, files);
  if (sent.code !== 0) throw new Error(sent.stderr);
  const graded = () =>
    h.db.gradingJob.count({
      where: { study: { studyInstanceUid: { in: uids } }, status: { in: ["COMPLETED", "FAILED"] } },
    });
  const latencies: number[] = [];
  const start = performance.now();
  while ((await graded()) < studies) {
    const path = join(work, `probe-${latencies.length}.dcm`);
    await writeFile(
      path,
      radiographDicom(probeImage, {
        studyInstanceUid: newUid(),
        bodyPart: "CHEST",
        studyDescription: "XR CHEST (probe)",
        seriesDescription: "PA",
      }),
    );
    const t = performance.now();
    const [outcome] = await cStoreFiles(peer, [path]);
    latencies.push(performance.now() - t);
    if (outcome?.status !== 0) throw new Error(`probe C-STORE failed: ${JSON.stringify(outcome)}`);
  }
  const seconds = (performance.now() - start) / 1000;
  await worker.close();
  latencies.sort((a, b) => a - b);
  return {
    mode,
    probes: latencies.length,
    seconds,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    max: latencies.at(-1)!,
  };
}

try {
  const baseline = await run("main thread");
  const threaded = await run("worker thread");
  console.log(
    `Probe C-STORE round trip (association + C-STORE + release of a 120×120 non-knee DX) while ${studies} bilateral studies are graded with the shipped model, listener and worker in one process (WORKER_CONCURRENCY 2):`,
  );
  console.log(
    "| worker service | probes | grading s | p50 ms | p99 ms | max ms | p99 vs baseline |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const r of [baseline, threaded]) {
    console.log(
      `| ${r.mode}${r === baseline ? " (baseline, SERVE_WORKER_THREAD=0)" : ""} | ${r.probes} | ${r.seconds.toFixed(1)} | ${r.p50.toFixed(0)} | ${r.p99.toFixed(0)} | ${r.max.toFixed(0)} | ${(r.p99 / baseline.p99).toFixed(2)}× |`,
    );
  }
} finally {
  await h.stop();
  await rm(work, { recursive: true, force: true });
}
process.exit(0);
