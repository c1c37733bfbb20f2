import { describe, expect, it } from "vitest";
import { statement } from "./sql.ts";

const tag = (strings: TemplateStringsArray, ...values: unknown[]) => statement(strings, values);

describe("statement", () => {
  it("binds every interpolated value as a numbered parameter, never as text", () => {
    const uid = '1.2.3\'; DROP TABLE "Instance"; --';
    const s = tag`SELECT id FROM "Instance" WHERE "sopInstanceUid" = ${uid} AND revision > ${2}`;
    expect(s.text).toBe(`SELECT id FROM "Instance" WHERE "sopInstanceUid" = $1 AND revision > $2`);
    expect(s.values).toEqual([uid, 2]);
  });

  it("sends bigints as decimal text, which PostgreSQL reads as bigint", () => {
    const s = tag`INSERT INTO t (size) VALUES (${2n ** 40n})`;
    expect(s.values).toEqual(["1099511627776"]);
  });

  it("keeps a statement without values as it is", () => {
    expect(tag`SELECT 1`).toEqual({ text: "SELECT 1", values: [] });
  });
});
