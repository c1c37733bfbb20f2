import type pg from "pg";

/**
 * A tagged template that runs one parameterised statement: every interpolated value is a bound
 * parameter ($1, $2, …), never text of the statement, as with Prisma's `$queryRaw`.
 */
export type Sql = <Row>(strings: TemplateStringsArray, ...values: unknown[]) => Promise<Row[]>;

/** The statement text and parameters of a tagged template (bigints as decimal text). */
export function statement(
  strings: readonly string[],
  values: readonly unknown[],
): { text: string; values: unknown[] } {
  let text = strings[0] ?? "";
  for (let i = 1; i < strings.length; i++) text += `$${i}${strings[i]}`;
  return { text, values: values.map((v) => (typeof v === "bigint" ? v.toString() : v)) };
}

export function sqlOver(pool: pg.Pool): Sql {
  return async <Row>(strings: TemplateStringsArray, ...values: unknown[]) => {
    const result = await pool.query(statement(strings, values));
    return result.rows as Row[];
  };
}
