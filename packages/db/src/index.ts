export { createDb, type Db } from "./client.ts";
export * from "./generated/prisma/client.ts";
