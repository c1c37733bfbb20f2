import { expect, it } from "vitest";
import { uidFromName } from "./uids.ts";

it("derives the same valid UID from the same name, and different ones from different names", () => {
  const a = uidFromName("sr:job-1");
  expect(a).toBe(uidFromName("sr:job-1"));
  expect(a).not.toBe(uidFromName("sr:job-2"));
  expect(a).toMatch(/^2\.25\.(0|[1-9][0-9]*)$/);
  expect(a.length).toBeLessThanOrEqual(64);
});
