/**
 * Rate limit for the audit rows of refusals: were every refused association or object to add a
 * row, an unauthenticated sender could grow the database without bound. Each peer address gets
 * `perMinute` rows per minute; what is held back is counted and written as one `audit.suppressed`
 * row per peer and minute (so the flood itself stays visible).
 */
import type { Db } from "@kneegrade/db";
import type { Logger } from "@kneegrade/log";

export interface AuditLimiter {
  /** Whether a refusal from `peer` may be written now; counts it as suppressed when not. */
  allow(peer: string): boolean;
  /** Writes the pending summaries and stops the timer. */
  stop(): Promise<void>;
}

/** Peers tracked at once; beyond it every unknown peer shares one bucket (memory stays bounded). */
const MAX_PEERS = 1024;

export function createAuditLimiter(opts: {
  db: Db;
  log: Logger;
  perMinute: number;
  windowMs?: number;
}): AuditLimiter {
  const windowMs = opts.windowMs ?? 60_000;
  let windows = new Map<string, { written: number; suppressed: number }>();

  const flush = async () => {
    const done = windows;
    windows = new Map();
    const summaries = [...done].filter(([, w]) => w.suppressed > 0);
    if (summaries.length === 0) return;
    await opts.db.auditEvent
      .createMany({
        data: summaries.map(([peer, w]) => ({
          event: "audit.suppressed",
          actor: "listener",
          details: {
            peer,
            suppressed: w.suppressed,
            written: w.written,
            windowSeconds: windowMs / 1000,
          },
        })),
      })
      .catch((error: Error) =>
        opts.log.error({ event: "audit.failed", err: error.message }, "audit summary not written"),
      );
    for (const [peer, w] of summaries) {
      opts.log.warn(
        { event: "audit.suppressed", peer, suppressed: w.suppressed },
        "refusals from one peer over the audit rate limit",
      );
    }
  };
  const timer = setInterval(() => void flush(), windowMs);
  timer.unref();

  return {
    allow(peer) {
      const key = windows.has(peer) || windows.size < MAX_PEERS ? peer : "(other peers)";
      const w = windows.get(key) ?? { written: 0, suppressed: 0 };
      windows.set(key, w);
      if (w.written < opts.perMinute) {
        w.written += 1;
        return true;
      }
      w.suppressed += 1;
      return false;
    },
    async stop() {
      clearInterval(timer);
      await flush();
    },
  };
}
