import { describe, expect, it } from "vitest";
import { isDicomUid, uidFromName } from "./uids.ts";

it("derives the same valid UID from the same name, and different ones from different names", () => {
  const a = uidFromName("sr:job-1");
  expect(a).toBe(uidFromName("sr:job-1"));
  expect(a).not.toBe(uidFromName("sr:job-2"));
  expect(a).toMatch(/^2\.25\.(0|[1-9][0-9]*)$/);
  expect(a.length).toBeLessThanOrEqual(64);
});

describe("isDicomUid (PS3.5 9.1)", () => {
  it("accepts UIDs and refuses anything that could be a path or is not a UID", () => {
    for (const good of ["1.2.840.10008.1.2", "0", "2.25.0.1", `1.${"2".repeat(62)}`]) {
      expect(isDicomUid(good), good).toBe(true);
    }
    for (const bad of [
      "../pwned",
      "..",
      "1.2.3.x",
      "1.2..3",
      "01.2",
      "1.02",
      ".1.2",
      "1.2.",
      "",
      `1.${"2".repeat(63)}`,
      "1.2\u00003",
      "1/2",
      " 1.2",
    ]) {
      expect(isDicomUid(bad), JSON.stringify(bad)).toBe(false);
    }
    expect(isDicomUid(undefined)).toBe(false);
  });
});
