import { randomUUID } from "node:crypto";
import { request } from "node:http";
import { networkInterfaces } from "node:os";
import { Queue } from "bullmq";
import { afterEach, describe, expect, it } from "vitest";
import { cachedCheck, withTimeout } from "./health.ts";
import { createMetrics } from "./metrics.ts";
import { loopbackHost, type RunningOpsServer, startOpsServer } from "./server.ts";

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

describe("the queue view", () => {
  const external = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
  /** A GET with the path sent exactly as written (fetch would normalise it). */
  const rawGet = (host: string, port: number, path: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host, port, path, method: "GET", headers }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      req.end();
    });

  let server: RunningOpsServer | undefined;
  let queue: Queue | undefined;
  afterEach(async () => {
    await server?.close();
    await queue?.obliterate({ force: true }).catch(() => {});
    await queue?.close();
    server = undefined;
  });

  it("answers nothing off loopback, by any spelling of its path, nor to a foreign Host", async () => {
    expect(external, "this test needs a non-loopback IPv4 address").toBeDefined();
    queue = new Queue("grade-study", {
      connection: { host: "127.0.0.1", port: 6379 },
      prefix: `kgtest-ops-${randomUUID().slice(0, 8)}`,
    });
    server = await startOpsServer({
      host: "0.0.0.0",
      port: 0,
      metrics: createMetrics(),
      checks: {},
      queues: [queue],
    });
    const port = server.port;
    const local = await rawGet("127.0.0.1", port, "/queues/api/queues");
    expect(local.status).toBe(200);
    expect(local.body).toContain("grade-study");
    for (const path of [
      "/queues",
      "/queues/api/queues",
      "/%71ueues/api/queues",
      "/%71%75%65%75%65%73/api/queues",
      "/queues/%61pi/queues",
      "/queues/api/redis/stats",
      "/queues/./api/queues",
      "/x/../queues/api/queues",
      "//queues/api/queues",
      "/queues;/api/queues",
    ]) {
      const r = await rawGet(external!, port, path);
      expect(r.status, `${path} from ${external}`).not.toBe(200);
      expect(r.body, path).not.toContain("grade-study");
      expect(r.body, path).not.toContain("redis_version");
    }
    // DNS rebinding: a loopback peer whose Host names another site.
    const rebound = await rawGet("127.0.0.1", port, "/queues/api/queues", {
      host: "attacker.example:80",
    });
    expect(rebound.status).toBe(403);
    // /metrics stays for the scraper, wherever it runs.
    expect((await rawGet(external!, port, "/metrics")).status).toBe(200);
  });

  it("knows loopback Host names", () => {
    for (const h of ["localhost", "localhost:9464", "127.0.0.1:1", "[::1]:9464", "LOCALHOST"]) {
      expect(loopbackHost(h), h).toBe(true);
    }
    for (const h of [
      undefined,
      "",
      "example.org",
      "127.0.0.1.nip.io",
      "localhost.evil:80",
      "[::2]",
    ]) {
      expect(loopbackHost(h), String(h)).toBe(false);
    }
  });
});
