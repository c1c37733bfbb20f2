/**
 * Readiness checks: each resolves when its dependency answers and throws (with the reason) when it
 * does not. `/readyz` runs them all, each under its own timeout, on every probe.
 */
import type { Db } from "@kneegrade/db";
import { redisConnection } from "@kneegrade/queue";
import { Redis, type RedisOptions } from "ioredis";

export type ReadinessCheck = () => Promise<void>;

/** Rejects with `<what> did not answer within <ms> ms` unless `p` settles first. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** PostgreSQL answers a query through the service's own client (its pool, its URL). */
export function postgresCheck(db: Db): ReadinessCheck {
  return async () => {
    await db.$queryRaw`SELECT 1`;
  };
}

/**
 * Redis answers PING on a connection of its own. Commands fail at once while it is disconnected
 * (no offline queue), and ioredis keeps reconnecting, so the check turns true again by itself.
 */
export function redisCheck(redisUrl: string): { check: ReadinessCheck; close(): void } {
  const redis = new Redis({
    ...(redisConnection(redisUrl) as RedisOptions),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 3000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  redis.on("error", () => {}); // the check reports it; the retry strategy reconnects
  return {
    check: async () => {
      if (redis.status !== "ready") await connected(redis, 2000);
      const pong = await redis.ping();
      if (pong !== "PONG") throw new Error(`Redis answered ${pong}`);
    },
    close: () => redis.disconnect(),
  };
}

/** Waits for a (re)connection under way, so a probe right after start-up does not fail for it. */
function connected(redis: Redis, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      redis.off("ready", onReady);
      reject(new Error(`Redis not connected (${redis.status})`));
    }, ms);
    redis.once("ready", onReady);
  });
}

/**
 * Caches a check's outcome for `ttlMs` (for checks that cost the other side something, like a
 * C-ECHO to the PACS on every probe of every replica). Concurrent calls share one run.
 */
export function cachedCheck(check: ReadinessCheck, ttlMs: number): ReadinessCheck {
  let last: { at: number; error?: unknown } | undefined;
  let running: Promise<void> | undefined;
  return async () => {
    if (last && Date.now() - last.at < ttlMs) {
      if (last.error !== undefined) throw last.error;
      return;
    }
    running ??= check()
      .then(
        () => {
          last = { at: Date.now() };
        },
        (error: unknown) => {
          last = { at: Date.now(), error };
        },
      )
      .finally(() => {
        running = undefined;
      });
    await running;
    if (last?.error !== undefined) throw last.error;
  };
}
