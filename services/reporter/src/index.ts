/**
 * The reporter service: takes `report-study` jobs, writes the study revision's Structured Report
 * (and, when configured, a Secondary Capture and a Basic Text SR) and delivers them to the PACS
 * with C-STORE, retrying with backoff while the PACS is unreachable (see job.ts).
 *
 * At start-up it checks that the PACS answers C-ECHO and that the configured result outputs answer
 * (the FHIR server's CapabilityStatement, a connection to the HL7 peer), so a misconfigured
 * destination is visible from the first minute; deliveries wait (and retry) until it does.
 */
import { readFileSync } from "node:fs";
import type { Config } from "@kneegrade/config";
import { QUEUES } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import { cEcho, type DicomPeer } from "@kneegrade/dicom";
import type { Logger } from "@kneegrade/log";
import { createMetrics, type Metrics } from "@kneegrade/ops";
import { createQueue, startJobWorker } from "@kneegrade/queue";
import { routeDcmjsLog } from "@kneegrade/report-jobs";
import { outputChecks, resultOutputs } from "@kneegrade/ris";
import type { Job } from "bullmq";
import { processReportJob, recordDeadLetter } from "./job.ts";
import { startPacsProbe } from "./pacs-probe.ts";
import { startReportReconciler } from "./reconcile.ts";

export * from "./job.ts";
export { type PacsProbe, type ProbeOutcome, startPacsProbe } from "./pacs-probe.ts";
export { reconcileReportJobs } from "./reconcile.ts";

export interface RunningReporter {
  pacsReachable: boolean;
  /** Resolves when the PACS answers C-ECHO now; throws with the reason when it does not. */
  checkPacs(): Promise<void>;
  /**
   * The configured result outputs (absent: off): whether each answered at start-up, and its
   * check, which resolves when it answers now and throws with the reason when it does not.
   */
  outputs: {
    fhir?: { reachable: boolean; check(): Promise<void> };
    hl7?: { reachable: boolean; check(): Promise<void> };
  };
  close(): Promise<void>;
}

/** The PACS as a DICOM peer, TLS material read from the configured files. */
export function pacsPeer(config: Config): DicomPeer {
  const read = (path: string | undefined) => (path ? readFileSync(path, "utf8") : undefined);
  const tls = config.PACS_TLS
    ? Object.fromEntries(
        Object.entries({
          ca: read(config.PACS_TLS_CA),
          cert: read(config.PACS_TLS_CERT),
          key: read(config.PACS_TLS_KEY),
        }).filter(([, v]) => v !== undefined),
      )
    : undefined;
  return {
    host: config.PACS_HOST,
    port: config.PACS_PORT,
    calledAet: config.PACS_AET,
    callingAet: config.LISTENER_AET,
    timeoutMs: config.DIMSE_TIMEOUT_SECONDS * 1000,
    ...(tls ? { tls } : {}),
  };
}

export async function startReporter(
  config: Config,
  db: Db,
  log: Logger,
  /** Where to count deliveries (the process's ops server serves it); a private one if absent. */
  metrics: Metrics = createMetrics(),
): Promise<RunningReporter> {
  // dcmjs writes the report objects and prints what it quotes to the console: routed, redacted.
  routeDcmjsLog(log);
  const pacs = pacsPeer(config);
  const where = { pacs: `${pacs.calledAet}@${pacs.host}:${pacs.port}${pacs.tls ? " (TLS)" : ""}` };
  const outputs = resultOutputs(config);
  log.info(
    {
      event: "reporter.result-outputs",
      fhir: outputs.fhir ? outputs.fhir.baseUrl : "off",
      hl7: outputs.hl7
        ? `${outputs.hl7.host}:${outputs.hl7.port}${outputs.hl7.tls ? " (TLS)" : ""}`
        : "off",
    },
    "results to the RIS: FHIR and HL7 outputs",
  );
  const echo = () => cEcho({ ...pacs, timeoutMs: Math.min(pacs.timeoutMs ?? 5_000, 5_000) });
  const checks = outputChecks(outputs);
  const probe = async (name: "fhir" | "hl7") => {
    const c = checks[name];
    if (!c) return undefined;
    try {
      await c.check();
      log.info(
        { event: `reporter.${name}-ok`, [name]: c.target },
        `${name.toUpperCase()} output answers`,
      );
      return { reachable: true, check: c.check };
    } catch (error) {
      // A warning, not a stop: the outbox keeps the results and retries until the peer answers.
      log.warn(
        { event: `reporter.${name}-unreachable`, [name]: c.target, err: (error as Error).message },
        `${name.toUpperCase()} output does not answer: results will wait in the outbox (and retry) until it does`,
      );
      return { reachable: false, check: c.check };
    }
  };
  const [outcome, fhirState, hl7State] = await Promise.all([echo(), probe("fhir"), probe("hl7")]);
  const pacsReachable = outcome.status === 0;
  if (pacsReachable) log.info({ event: "reporter.pacs-ok", ...where }, "PACS answers C-ECHO");
  else {
    log.warn(
      { event: "reporter.pacs-unreachable", ...where, err: outcome.error },
      "PACS does not answer C-ECHO: reports will wait (and retry) until it does",
    );
  }
  const worker = startJobWorker({
    queue: QUEUES.reportStudy,
    config,
    concurrency: config.REPORTER_CONCURRENCY,
    process: async (job: Job<unknown>) =>
      processReportJob(job.data, job.attemptsMade + 1, {
        db,
        config,
        pacs,
        log,
        metrics,
        outputs,
      }),
    recordFinalFailure: (job, error) => recordDeadLetter(db, job.data, error, log, metrics),
    log,
    events: {
      error: "reporter.error",
      recordRetry: "report.dead-letter-retry",
      unrecorded: "report.dead-letter-unrecorded",
    },
    metrics,
  });
  // One connection to the report queue for the reconciler and the probe.
  const reportQueue = createQueue(QUEUES.reportStudy, config);
  reportQueue.on("error", () => {
    // Redis down: the job worker logs it; the next round tries again.
  });
  // Report jobs Redis lost (restarted without persistence) are added again from PostgreSQL.
  const reconciler = startReportReconciler({ db, queue: reportQueue, log });
  // Reports waiting on a PACS that is back go within PACS_PROBE_SECONDS, not their next retry.
  const pacsProbe = startPacsProbe({
    db,
    queue: reportQueue,
    config,
    echo,
    pacsReachable,
    pacs: where.pacs,
    log,
  });
  return {
    pacsReachable,
    outputs: {
      ...(fhirState ? { fhir: fhirState } : {}),
      ...(hl7State ? { hl7: hl7State } : {}),
    },
    checkPacs: async () => {
      const answer = await echo();
      if (answer.status !== 0) {
        throw new Error(
          `PACS ${where.pacs} does not answer C-ECHO: ${answer.error ?? `status 0x${answer.status?.toString(16)}`}`,
        );
      }
    },
    close: async () => {
      await pacsProbe.stop();
      await reconciler.stop();
      await reportQueue.close();
      await worker.close();
    },
  };
}
