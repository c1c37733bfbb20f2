import { afterEach, describe, expect, it } from "vitest";
import { cachedCheck, withTimeout } from "./health.ts";
import { createMetrics } from "./metrics.ts";
import { type RunningOpsServer, startOpsServer } from "./server.ts";

describe("ops server", () => {
  let server: RunningOpsServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("is ready only when every check answers, within its time limit", async () => {
    let redisUp = true;
    server = await startOpsServer({
      host: "127.0.0.1",
      port: 0,
      metrics: createMetrics(),
      checkTimeoutMs: 200,
      checks: {
        postgres: async () => {},
        redis: async () => {
          if (!redisUp) throw new Error("connect ECONNREFUSED");
        },
      },
    });
    const url = `http://127.0.0.1:${server.port}`;
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      ready: true,
      checks: { postgres: { ok: true }, redis: { ok: true } },
    });
    redisUp = false;
    const down = await fetch(`${url}/readyz`);
    expect(down.status).toBe(503);
    expect(await down.json()).toEqual({
      ready: false,
      checks: { postgres: { ok: true }, redis: { ok: false, error: "connect ECONNREFUSED" } },
    });
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    // No queues given: no queue view.
    expect((await fetch(`${url}/queues`)).status).toBe(404);
  });

  it("counts a hung dependency as down", async () => {
    server = await startOpsServer({
      host: "127.0.0.1",
      port: 0,
      metrics: createMetrics(),
      checkTimeoutMs: 100,
      checks: { postgres: () => new Promise(() => {}) },
    });
    const r = await server.readiness();
    expect(r).toEqual({
      ready: false,
      checks: { postgres: { ok: false, error: "postgres did not answer within 100 ms" } },
    });
  });

  it("serves Prometheus text with known outcomes at zero from the start", async () => {
    const metrics = createMetrics();
    metrics.instancesReceived.inc({ outcome: "knee" });
    server = await startOpsServer({ host: "127.0.0.1", port: 0, metrics, checks: {} });
    const r = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    expect(r.headers.get("content-type")).toContain("text/plain");
    const text = await r.text();
    expect(text).toContain('kneegrade_instances_received_total{outcome="knee"} 1');
    expect(text).toContain('kneegrade_instances_received_total{outcome="resent"} 0');
    expect(text).toContain('kneegrade_deliveries_total{outcome="dead_letter"} 0');
    expect(text).toContain('kneegrade_grading_stage_seconds_count{stage="inference"} 0');
    // No default process metrics unless asked for (tests start many registries).
    expect(text).not.toContain("process_resident_memory_bytes");
  });
});

describe("cachedCheck", () => {
  it("runs the check at most once per period and shares a run in flight", async () => {
    let runs = 0;
    let fail = false;
    const check = cachedCheck(async () => {
      runs += 1;
      await new Promise((r) => setTimeout(r, 20));
      if (fail) throw new Error("PACS does not answer");
    }, 60_000);
    await Promise.all([check(), check(), check()]);
    expect(runs).toBe(1);
    fail = true;
    await check(); // still the cached success
    expect(runs).toBe(1);
  });

  it("caches failures too, and runs again after the period", async () => {
    let runs = 0;
    const check = cachedCheck(async () => {
      runs += 1;
      throw new Error(`down ${runs}`);
    }, 50);
    await expect(check()).rejects.toThrow("down 1");
    await expect(check()).rejects.toThrow("down 1");
    await new Promise((r) => setTimeout(r, 60));
    await expect(check()).rejects.toThrow("down 2");
  });
});

it("withTimeout lets a prompt answer through", async () => {
  await expect(withTimeout(Promise.resolve(3), 50, "x")).resolves.toBe(3);
  await expect(withTimeout(new Promise(() => {}), 20, "redis")).rejects.toThrow(
    "redis did not answer within 20 ms",
  );
});
