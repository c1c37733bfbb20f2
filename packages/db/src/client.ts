/**
 * PostgreSQL access. Prisma's query compiler runs in JS over node-postgres (no native engine),
 * so the same code runs offline, in CI and in the containers.
 */
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "./generated/prisma/client.ts";

export type Db = PrismaClient;

export function createDb(databaseUrl: string): Db {
  return new PrismaClient({
    adapter: new PrismaPg({ connectionString: databaseUrl, max: 10 }),
  });
}
