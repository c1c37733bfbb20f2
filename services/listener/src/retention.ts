/**
 * Spool retention (SPOOL_RETENTION_DAYS; 0 keeps everything): once a study has settled — REPORTED,
 * REFUSED or FAILED — and not changed for that many days, its spooled images and the report
 * objects written for it are deleted from disk. PostgreSQL keeps every row (UIDs, digests, results,
 * reports, deliveries): `Instance.spoolPath` becomes null and a `spool.retention` audit event says
 * what was removed. A study that is still moving (RECEIVING … GRADED) is never touched.
 */
import { unlink } from "node:fs/promises";
import type { Db } from "@kneegrade/db";
import type { Logger } from "@kneegrade/log";

const SETTLED = ["REPORTED", "REFUSED", "FAILED"] as const;

async function remove(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

export async function sweepSpool(
  db: Db,
  retentionDays: number,
  now = new Date(),
): Promise<{ studies: number; images: number; reports: number }> {
  const result = { studies: 0, images: 0, reports: 0 };
  if (retentionDays <= 0) return result;
  const cutoff = new Date(now.getTime() - retentionDays * 86_400_000);
  const studies = await db.study.findMany({
    where: {
      status: { in: [...SETTLED] },
      updatedAt: { lt: cutoff },
      instances: { some: { spoolPath: { not: null } } },
    },
    include: { instances: { where: { spoolPath: { not: null } } }, reports: true },
    take: 200,
  });
  for (const study of studies) {
    let images = 0;
    let reports = 0;
    for (const instance of study.instances) {
      if (await remove(instance.spoolPath!)) images++;
      await db.instance.update({ where: { id: instance.id }, data: { spoolPath: null } });
    }
    for (const report of study.reports) {
      if (await remove(report.path)) reports++;
    }
    await db.auditEvent.create({
      data: {
        event: "spool.retention",
        actor: "listener",
        studyInstanceUid: study.studyInstanceUid,
        details: { status: study.status, images, reports, retentionDays },
      },
    });
    result.studies++;
    result.images += images;
    result.reports += reports;
  }
  return result;
}

/** Runs the sweep now and then every hour until stopped; errors are logged and retried. */
export function startRetention(opts: {
  db: Db;
  retentionDays: number;
  log: Logger;
  intervalMs?: number;
}) {
  if (opts.retentionDays <= 0) return { stop: async () => {} };
  let running: Promise<void> | undefined;
  const tick = () => {
    if (running) return;
    running = sweepSpool(opts.db, opts.retentionDays)
      .then((r) => {
        if (r.studies > 0) {
          opts.log.info(
            { event: "spool.retention", ...r },
            "removed settled studies' files from the spool",
          );
        }
      })
      .catch((error: unknown) =>
        opts.log.error(
          { event: "spool.retention-failed", err: error },
          "spool retention failed; retrying",
        ),
      )
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(tick, opts.intervalMs ?? 3_600_000);
  tick();
  return {
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}
