/** recordDurably: a final failure's database write is retried, not dropped on the first error. */
import { describe, expect, it } from "vitest";
import { recordDurably } from "./index.ts";

describe("recordDurably", () => {
  it("retries until the write succeeds", async () => {
    let calls = 0;
    const retries: number[] = [];
    const ok = await recordDurably(
      async () => {
        calls += 1;
        if (calls < 3) throw new Error("database unavailable");
      },
      { delayMs: 1, onRetry: (attempt) => retries.push(attempt) },
    );
    expect(ok).toBe(true);
    expect(calls).toBe(3);
    expect(retries).toEqual([1, 2]);
  });

  it("gives up after the last attempt and says so", async () => {
    let calls = 0;
    const ok = await recordDurably(
      async () => {
        calls += 1;
        throw new Error("still down");
      },
      { attempts: 4, delayMs: 1 },
    );
    expect(ok).toBe(false);
    expect(calls).toBe(4);
  });
});
