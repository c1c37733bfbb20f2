/**
 * PostgreSQL access. Prisma's query compiler runs in JS over node-postgres (no native engine),
 * so the same code runs offline, in CI and in the containers.
 */
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient } from "./generated/prisma/client.ts";
import { type Sql, sqlOver } from "./sql.ts";

export type Db = PrismaClient;

const pools = new WeakMap<Db, Sql>();

export function createDb(databaseUrl: string): Db {
  // One pool for both Prisma and `sqlOf`, so the connection budget is the same; Prisma ends it
  // on `$disconnect`.
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
  // A connection that dies while idle is dropped by the pool and the next statement opens another;
  // without a listener the pool's "error" event would end the process.
  pool.on("error", () => {});
  const db = new PrismaClient({ adapter: new PrismaPg(pool, { disposeExternalPool: true }) });
  pools.set(db, sqlOver(pool));
  return db;
}

/**
 * Plain SQL on the connections of `db`, for the few statements on a hot path: a statement through
 * Prisma's query layer costs about 0.5 ms more CPU than the same statement through node-postgres
 * (docs/PERFORMANCE.md, "Ingest").
 */
export function sqlOf(db: Db): Sql {
  const sql = pools.get(db);
  if (!sql) throw new Error("sqlOf: this client was not made by createDb");
  return sql;
}
