/**
 * Before any test: the test database exists and is migrated (with the same `prisma migrate deploy`
 * that CI and production use), and Redis answers. Fails loudly if a real service is missing.
 */
import { execFileSync } from "node:child_process";
import { Redis } from "ioredis";
import pg from "pg";
import { TEST_DATABASE_URL, TEST_REDIS_URL } from "./helpers/env.ts";
import { REPO_ROOT } from "./helpers/paths.ts";

export default async function setup() {
  const url = new URL(TEST_DATABASE_URL);
  const dbName = url.pathname.slice(1);
  const admin = new pg.Client({
    connectionString: TEST_DATABASE_URL.replace(/\/[^/]*$/, "/postgres"),
  });
  await admin.connect();
  const exists = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [dbName]);
  if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${dbName}"`);
  await admin.end();
  execFileSync("npx", ["prisma", "migrate", "deploy"], {
    cwd: REPO_ROOT,
    env: { ...process.env, DATABASE_URL: TEST_DATABASE_URL, CHECKPOINT_DISABLE: "1" },
    stdio: "pipe",
  });
  const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  await redis.ping();
  await redis.quit();
}
