/**
 * kneegrade's Prometheus metrics, defined once. Every process has one registry (`createMetrics`),
 * served by its ops server (`/metrics`); the services it runs record into it.
 *
 * Names follow `kneegrade_<noun>_<unit>[_total]`; labels are small closed sets (an outcome, a
 * refusal code, a stage, a queue) — never a UID or anything from a patient's data set.
 */
import { QUEUES } from "@kneegrade/contracts";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** Seconds buckets from 5 ms to 2 min: a stage of one radiograph up to a whole study on a CPU. */
const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  // Process memory, CPU, event-loop lag, GC, handles: the standard names (process_*, nodejs_*),
  // so stock Node.js dashboards work too.
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const metrics = {
    registry,
    ...listenerMetrics(registers),
    ...gradingMetrics(registers),
    ...jobMetrics(registers),
    ...modelMetrics(registers),
  };
  // The known label values start at 0, so rate() and dashboards see a series from the first scrape.
  for (const outcome of ["knee", "not_knee", "resent"])
    metrics.instancesReceived.inc({ outcome }, 0);
  for (const outcome of ["GRADED", "REFUSED", "FAILED"])
    metrics.instancesGraded.inc({ outcome }, 0);
  for (const outcome of ["sent", "failed", "dead_letter"]) metrics.deliveries.inc({ outcome }, 0);
  for (const channel of ["fhir", "hl7"]) {
    for (const outcome of ["sent", "failed", "dead_letter"])
      metrics.resultDeliveries.inc({ channel, outcome }, 0);
  }
  for (const queue of Object.values(QUEUES)) {
    for (const outcome of ["completed", "retried", "failed"])
      metrics.jobs.inc({ queue, outcome }, 0);
  }
  for (const stage of ["read", "decode", "localise", "inference"]) {
    metrics.gradingStageSeconds.zero({ stage });
  }
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;

/** What the listener counts: instances and associations, taken or refused. */
function listenerMetrics(registers: Registry[]) {
  return {
    /** Instances answered with success, by what was done with them. */
    instancesReceived: new Counter({
      name: "kneegrade_instances_received_total",
      help: "C-STOREs answered with success: knee (kept), not_knee (recorded, pixels dropped), resent (same object again)",
      labelNames: ["outcome"] as const,
      registers,
    }),
    bytesReceived: new Counter({
      name: "kneegrade_received_bytes_total",
      help: "Data set bytes of the instances answered with success",
      registers,
    }),
    instancesRefused: new Counter({
      name: "kneegrade_instances_refused_total",
      help: "C-STOREs answered with a failure status, by code (e.g. DB_UNAVAILABLE, INVALID_OBJECT, disk-watermark)",
      labelNames: ["code"] as const,
      registers,
    }),
    associationsRefused: new Counter({
      name: "kneegrade_associations_refused_total",
      help: "Associations rejected at negotiation (A-ASSOCIATE-RJ), by reason",
      labelNames: ["reason"] as const,
      registers,
    }),
    connectionsRefused: new Counter({
      name: "kneegrade_connections_refused_total",
      help: "Connections closed or aborted by the listener's network guard, by reason",
      labelNames: ["reason"] as const,
      registers,
    }),
    associationsOpen: new Gauge({
      name: "kneegrade_associations_open",
      help: "Accepted associations open now",
      registers,
    }),
  };
}

/** What the worker measures: grading stages and outcomes, ensemble batches. */
function gradingMetrics(registers: Registry[]) {
  return {
    /** Per radiograph; `read` is the spool read, the rest as docs/GRADING.md names them. */
    gradingStageSeconds: new Histogram({
      name: "kneegrade_grading_stage_seconds",
      help: "Time per radiograph and stage: read (spool), decode (pixels), localise (knees, crops), inference (ensemble, micro-batching wait included)",
      labelNames: ["stage"] as const,
      buckets: SECONDS_BUCKETS,
      registers,
    }),
    instancesGraded: new Counter({
      name: "kneegrade_instances_graded_total",
      help: "Radiographs through the worker, by outcome (GRADED, REFUSED, FAILED)",
      labelNames: ["outcome"] as const,
      registers,
    }),
    kneesGraded: new Counter({
      name: "kneegrade_knees_graded_total",
      help: "Knees graded (KL grade predicted)",
      registers,
    }),
    inferenceBatchSize: new Histogram({
      name: "kneegrade_inference_batch_size",
      help: "Knees per ensemble run (micro-batched across concurrent jobs)",
      buckets: BATCH_BUCKETS,
      registers,
    }),
    inferenceBatchSeconds: new Histogram({
      name: "kneegrade_inference_batch_seconds",
      help: "Time of one ensemble run",
      buckets: SECONDS_BUCKETS,
      registers,
    }),
  };
}

/** Jobs and what the reporter delivers. */
function jobMetrics(registers: Registry[]) {
  return {
    jobs: new Counter({
      name: "kneegrade_jobs_total",
      help: "Jobs this process finished, by queue and outcome (completed, retried, failed: no attempt left or permanent)",
      labelNames: ["queue", "outcome"] as const,
      registers,
    }),
    jobSeconds: new Histogram({
      name: "kneegrade_job_seconds",
      help: "Time from a job's start to its completion in this process, by queue",
      labelNames: ["queue"] as const,
      buckets: SECONDS_BUCKETS,
      registers,
    }),
    deliveries: new Counter({
      name: "kneegrade_deliveries_total",
      help: "Report objects sent to the PACS, by outcome (sent, failed: will retry, dead_letter: no attempt left)",
      labelNames: ["outcome"] as const,
      registers,
    }),
    resultDeliveries: new Counter({
      name: "kneegrade_result_deliveries_total",
      help: "Results sent to the RIS, by channel (fhir, hl7) and outcome (sent, failed: will retry, dead_letter: no attempt left)",
      labelNames: ["channel", "outcome"] as const,
      registers,
    }),
  };
}

/** The model this worker has loaded. */
function modelMetrics(registers: Registry[]) {
  return {
    modelInfo: new Gauge({
      name: "kneegrade_model_info",
      help: "1 per ensemble member loaded: the model's version and status, and the member's execution provider",
      labelNames: ["version", "status", "member", "provider"] as const,
      registers,
    }),
    modelLoaded: new Gauge({
      name: "kneegrade_model_loaded",
      help: "1 when this worker has a usable model loaded, 0 when it takes no jobs for want of one",
      registers,
    }),
  };
}
