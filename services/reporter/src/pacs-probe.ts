/**
 * The PACS probe: while reports wait to be retried after the PACS failed them, the reporter sends
 * the PACS a C-ECHO every `PACS_PROBE_SECONDS`; when a PACS that did not answer answers again, the
 * waiting `report-study` jobs are promoted (BullMQ moves them from delayed to waiting) and go at
 * once, instead of at their next retry (up to `DELIVERY_BACKOFF_MAX_SECONDS` later).
 *
 * Bounded: one probe at a time (the next is scheduled when one ends); no C-ECHO while no report
 * waits on the PACS; jobs are released only after the probe saw the PACS not answer, so a PACS that
 * answers C-ECHO but refuses the objects (full, a rejected SOP class) keeps the retry schedule
 * instead of getting a try on every probe. Logs carry counts and the PACS's address, never
 * patient data.
 */
import type { Config } from "@kneegrade/config";
import type { Db } from "@kneegrade/db";
import type { RequestOutcome } from "@kneegrade/dicom";
import { errorFields, type Logger } from "@kneegrade/log";
import { deliverySchedule } from "@kneegrade/queue";
import type { Job, Queue } from "bullmq";

export type PacsProbeConfig = Pick<
  Config,
  | "PACS_PROBE_SECONDS"
  | "DELIVERY_ATTEMPTS"
  | "DELIVERY_BACKOFF_SECONDS"
  | "DELIVERY_BACKOFF_MAX_SECONDS"
  | "DELIVERY_GIVE_UP_HOURS"
>;

export interface PacsProbeOptions {
  db: Db;
  /** The `report-study` queue (the reporter's; closed by its owner). */
  queue: Queue;
  config: PacsProbeConfig;
  /** One C-ECHO of the PACS (status 0: it answers). */
  echo: () => Promise<RequestOutcome>;
  /** Whether the PACS answered at start-up: one that did not counts as seen down. */
  pacsReachable: boolean;
  /** The PACS as the logs name it (AE title, host, port). */
  pacs: string;
  log: Logger;
}

/**
 * What one probe found: no report waiting on the PACS (no C-ECHO sent), the PACS not answering,
 * answering (not seen down: the reports keep their schedule), or answering again (`released`:
 * the reports sent now).
 */
export type ProbeOutcome =
  | { state: "idle" }
  | { state: "down" }
  | { state: "up" }
  | { state: "back"; released: number };

export interface PacsProbe {
  /** One probe now (after the one in progress, if any). */
  probe(): Promise<ProbeOutcome>;
  stop(): Promise<void>;
}

/** Delayed jobs read per Redis call, and at most per probe (the rest keep their schedule). */
const PAGE = 500;
const MAX_JOBS = 20_000;

/**
 * The delayed `report-study` jobs that wait on the PACS: a delivery of theirs to it failed and is
 * still pending. At most `limit` (those waiting on a FHIR server or the RIS only are left alone).
 */
async function waitingOnPacs(queue: Queue, db: Db, limit: number): Promise<Job[]> {
  const found: Job[] = [];
  for (let start = 0; start < MAX_JOBS && found.length < limit; start += PAGE) {
    const page = await queue.getDelayed(start, start + PAGE - 1);
    const ids = [...new Set(page.map(gradingJobOf).filter((id) => id !== undefined))];
    if (ids.length > 0) {
      const pending = await db.delivery.findMany({
        where: {
          channel: "DICOM",
          status: "PENDING",
          attempts: { gt: 0 },
          report: { gradingJobId: { in: ids } },
        },
        select: { report: { select: { gradingJobId: true } } },
      });
      const waiting = new Set(pending.map((d) => d.report.gradingJobId));
      found.push(...page.filter((j) => waiting.has(gradingJobOf(j) ?? null)));
    }
    if (page.length < PAGE) break;
  }
  return found.slice(0, limit);
}

/** The grading job a `report-study` job reports (its payload is checked when it runs, not here). */
function gradingJobOf(job: Job | undefined): string | undefined {
  const id = (job?.data as { gradingJobId?: unknown } | null | undefined)?.gradingJobId;
  return typeof id === "string" ? id : undefined;
}

/**
 * Says how report deliveries retry and when they give up, so the dead-letter horizon is never a
 * surprise (a warning when `DELIVERY_ATTEMPTS` cuts it short of `DELIVERY_GIVE_UP_HOURS`).
 */
function logSchedule(o: PacsProbeOptions): void {
  const s = deliverySchedule(o.config);
  const hours = Math.round((s.spanMs / 3_600_000) * 10) / 10;
  const fields = {
    event: "reporter.delivery-schedule",
    firstRetrySeconds: s.baseMs / 1000,
    maxRetrySeconds: s.maxMs / 1000,
    attempts: s.attempts,
    giveUpHours: hours,
    pacsProbeSeconds: o.config.PACS_PROBE_SECONDS,
  };
  const text = `deliveries retry after ${s.baseMs / 1000} s, doubling to ${s.maxMs / 1000} s; dead letter after ${s.attempts} attempts (${hours} h)`;
  if (s.attemptsSet && s.spanMs < o.config.DELIVERY_GIVE_UP_HOURS * 3_600_000) {
    o.log.warn(
      fields,
      `${text}: DELIVERY_ATTEMPTS gives up before DELIVERY_GIVE_UP_HOURS (${o.config.DELIVERY_GIVE_UP_HOURS} h); unset it to retry that long`,
    );
  } else o.log.info(fields, text);
}

/**
 * Starts the probe (and says what the delivery schedule is). `PACS_PROBE_SECONDS` 0: no probe;
 * `probe()` then runs one on demand.
 */
export function startPacsProbe(o: PacsProbeOptions): PacsProbe {
  logSchedule(o);
  const { queue } = o;
  let seenDown = !o.pacsReachable;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<ProbeOutcome> | undefined;

  const once = async (): Promise<ProbeOutcome> => {
    if (
      (await queue.getDelayedCount()) === 0 ||
      (await waitingOnPacs(queue, o.db, 1)).length === 0
    ) {
      // Nothing waits on the PACS: whatever it did before no longer matters — unless a report is
      // being tried or about to be: a job between its failed attempt and its next delay is not
      // "delayed", and forgetting the outage then would leave it to its retry when the PACS is back.
      const { active = 0, waiting = 0 } = await queue.getJobCounts("active", "waiting");
      if (active === 0 && waiting === 0) seenDown = false;
      return { state: "idle" };
    }
    const outcome = await o.echo();
    if (outcome.status !== 0) {
      if (!seenDown) {
        o.log.info(
          { event: "reporter.pacs-probe-down", pacs: o.pacs, err: outcome.error },
          `PACS does not answer C-ECHO while reports wait for it: probing every ${o.config.PACS_PROBE_SECONDS} s`,
        );
      }
      seenDown = true;
      return { state: "down" };
    }
    if (!seenDown) return { state: "up" };
    seenDown = false;
    const jobs = await waitingOnPacs(queue, o.db, MAX_JOBS);
    let released = 0;
    for (const job of jobs) {
      try {
        await job.promote();
        released += 1;
      } catch {
        // no longer delayed: retried, finished or released by another reporter meanwhile
      }
    }
    o.log.info(
      { event: "reporter.pacs-back", pacs: o.pacs, released },
      "PACS answers C-ECHO again: the reports waiting for it go now",
    );
    return { state: "back", released };
  };

  const probe = (): Promise<ProbeOutcome> => {
    const previous = running ?? Promise.resolve();
    const next = previous
      .catch(() => undefined)
      .then(once)
      .finally(() => {
        if (running === next) running = undefined;
      });
    running = next;
    return next;
  };

  const schedule = () => {
    if (stopped || o.config.PACS_PROBE_SECONDS <= 0) return;
    timer = setTimeout(() => {
      probe()
        .catch((error) =>
          o.log.warn(
            { event: "reporter.pacs-probe-error", err: errorFields(error) },
            "PACS probe failed; trying again on its next round",
          ),
        )
        .finally(schedule);
    }, o.config.PACS_PROBE_SECONDS * 1000);
  };
  schedule();

  return {
    probe,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running?.catch(() => undefined);
    },
  };
}
