/**
 * Prisma CLI configuration (migrate, generate). Works offline: the JS schema engine talks to
 * PostgreSQL through @prisma/adapter-pg, so no native engine is downloaded (see docs/DATABASE.md).
 */
import { PrismaPg } from "@prisma/adapter-pg";
import { defineConfig } from "prisma/config";

process.env.CHECKPOINT_DISABLE ??= "1";

process.env.DATABASE_URL ??= "postgresql://postgres@127.0.0.1:5432/kneegrade";
const databaseUrl = new URL(process.env.DATABASE_URL);

/** pg_catalog's `"char"` (18) and `name` (19) columns, which adapter-pg refuses to deserialize. */
const CATALOG_TEXT_OIDS = new Set([18, 19]);
let patched = false;

/**
 * The wasm schema engine reads pg_catalog columns of types `"char"` and `name`; adapter-pg maps
 * unknown oids to an error. Reporting them as `text` (25) is exact: pg returns both as strings.
 */
function readCatalogTypesAsText(adapter: object): void {
  if (patched) return;
  const queryable = Object.getPrototypeOf(Object.getPrototypeOf(adapter)) as {
    performIO: (query: unknown) => Promise<{ fields: { dataTypeID: number }[] }>;
  };
  const performIO = queryable.performIO;
  queryable.performIO = async function (this: unknown, query: unknown) {
    const result = await performIO.call(this, query);
    for (const field of result.fields ?? []) {
      if (CATALOG_TEXT_OIDS.has(field.dataTypeID)) field.dataTypeID = 25;
    }
    return result;
  };
  patched = true;
}

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  experimental: { adapter: true },
  engine: "js",
  async adapter() {
    const factory = new PrismaPg({
      host: databaseUrl.hostname,
      port: Number(databaseUrl.port || 5432),
      user: decodeURIComponent(databaseUrl.username || "postgres"),
      password: decodeURIComponent(databaseUrl.password) || undefined,
      database: databaseUrl.pathname.replace(/^\//, "") || "kneegrade",
    });
    const connect = factory.connect.bind(factory);
    factory.connect = async () => {
      const adapter = await connect();
      readCatalogTypesAsText(adapter);
      return adapter;
    };
    return factory;
  },
});
