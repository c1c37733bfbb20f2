export { createDb, type Db, sqlOf } from "./client.ts";
export * from "./generated/prisma/client.ts";
export type { Sql } from "./sql.ts";
