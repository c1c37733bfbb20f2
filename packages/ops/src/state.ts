/**
 * Gauges of the installation's state, read at scrape time: studies per state (PostgreSQL) and jobs
 * per queue and state (Redis). Every process that serves /metrics reports the same values, so
 * dashboards aggregate them with `max` (not `sum`) across pods.
 */
import type { Db } from "@kneegrade/db";
import type { Queue } from "bullmq";
import { Gauge } from "prom-client";
import { withTimeout } from "./health.ts";
import type { Metrics } from "./metrics.ts";

/** A scrape must answer even while PostgreSQL or Redis hangs. */
const COLLECT_TIMEOUT_MS = 3000;

export const STUDY_STATES = [
  "RECEIVING",
  "QUEUED",
  "GRADING",
  "GRADED",
  "REPORTED",
  "FAILED",
  "REFUSED",
] as const;
export const JOB_STATES = ["waiting", "active", "delayed", "completed", "failed"] as const;

export function registerStateGauges(
  metrics: Metrics,
  deps: { db: Db; queues: Queue[]; onError?: (what: string, error: unknown) => void },
): void {
  const registers = [metrics.registry];
  new Gauge({
    name: "kneegrade_studies",
    help: "Studies in PostgreSQL per state (the same in every process: aggregate with max)",
    labelNames: ["state"] as const,
    registers,
    async collect() {
      try {
        const rows = await withTimeout(
          deps.db.study.groupBy({ by: ["status"], _count: { _all: true } }),
          COLLECT_TIMEOUT_MS,
          "PostgreSQL",
        );
        const counts = new Map(rows.map((r) => [r.status as string, r._count._all]));
        for (const state of STUDY_STATES) this.set({ state }, counts.get(state) ?? 0);
      } catch (error) {
        // An unreachable database shows in /readyz; the scrape still answers with the rest.
        this.reset();
        deps.onError?.("studies", error);
      }
    },
  });
  new Gauge({
    name: "kneegrade_queue_jobs",
    help: "Jobs per BullMQ queue and state (the same in every process: aggregate with max)",
    labelNames: ["queue", "state"] as const,
    registers,
    async collect() {
      this.reset();
      await Promise.all(
        deps.queues.map(async (queue) => {
          try {
            const counts = await withTimeout(
              queue.getJobCounts(...JOB_STATES),
              COLLECT_TIMEOUT_MS,
              "Redis",
            );
            for (const state of JOB_STATES)
              this.set({ queue: queue.name, state }, counts[state] ?? 0);
          } catch (error) {
            deps.onError?.(`queue ${queue.name}`, error);
          }
        }),
      );
    },
  });
}
