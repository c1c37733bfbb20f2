/**
 * The ops server: one per process, on METRICS_HOST:METRICS_PORT, for whatever services the process
 * runs. `/metrics` (Prometheus text), `/healthz` (liveness: the process answers), `/readyz` (every
 * dependency answers: 200, else 503 with the failing checks) and `/queues`, a read-only BullMQ view
 * (bull-board) answered only to loopback peers (`kubectl port-forward`, ssh -L).
 */
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { FastifyAdapter } from "@bull-board/fastify";
import type { Queue } from "bullmq";
import Fastify from "fastify";
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from "prom-client";
import { type ReadinessCheck, withTimeout } from "./health.ts";
import type { Metrics } from "./metrics.ts";

export interface OpsServerOptions {
  host: string;
  /** 0: any free port (tests); the bound port is returned. */
  port: number;
  metrics: Metrics;
  /** Named readiness checks; `/readyz` is 200 only when all of them resolve. */
  checks: Record<string, ReadinessCheck>;
  /** Each check's time limit (a hung dependency counts as down). */
  checkTimeoutMs?: number;
  /** Queues shown at `/queues` (none: no queue view). */
  queues?: Queue[];
  /**
   * Metrics recorded elsewhere in the process (the worker service's thread, `kneegrade serve`):
   * read on each scrape and summed with `metrics` into one exposition. Read when scraped, so a
   * source may be added after the server started.
   */
  metricSources?: MetricSource[];
}

/** Another registry's metrics as prom-client's `getMetricsAsJSON()` gives them. */
export type MetricSource = () => Promise<MetricObjectWithValues<MetricValue<string>>[]>;

export interface ReadinessReport {
  ready: boolean;
  checks: Record<string, { ok: boolean; error?: string }>;
}

export interface RunningOpsServer {
  port: number;
  readiness(): Promise<ReadinessReport>;
  close(): Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "::ffff:127.0.0.1"]);

/** Whether a Host header names this machine's loopback (with or without a port). */
export function loopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.startsWith("[")
    ? host.slice(0, host.indexOf("]") + 1)
    : host.replace(/:\d+$/, "");
  return ["localhost", "127.0.0.1", "[::1]"].includes(name.toLowerCase());
}

export async function startOpsServer(opts: OpsServerOptions): Promise<RunningOpsServer> {
  const timeoutMs = opts.checkTimeoutMs ?? 3000;
  const readiness = async (): Promise<ReadinessReport> => {
    const entries = await Promise.all(
      Object.entries(opts.checks).map(async ([name, check]) => {
        try {
          await withTimeout(check(), timeoutMs, name);
          return [name, { ok: true }] as const;
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          // Prisma's message embeds the invocation; its last line says what went wrong.
          return [
            name,
            { ok: false, error: message.trim().split("\n").pop()!.slice(0, 300) },
          ] as const;
        }
      }),
    );
    return { ready: entries.every(([, r]) => r.ok), checks: Object.fromEntries(entries) };
  };

  const app = Fastify({ logger: false });
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_request, reply) => {
    const report = await readiness();
    return reply.code(report.ready ? 200 : 503).send(report);
  });
  app.get("/metrics", async (_request, reply) => {
    const registry = opts.metrics.registry;
    const sources = opts.metricSources ?? [];
    const text =
      sources.length === 0
        ? await registry.metrics()
        : await AggregatorRegistry.aggregate([
            await registry.getMetricsAsJSON(),
            ...(await Promise.all(sources.map((source) => source()))),
          ]).metrics();
    return reply.header("content-type", registry.contentType).send(text);
  });
  if (opts.queues && opts.queues.length > 0) {
    // The view shows job payloads (UIDs, no patient data) and queue internals: loopback only, and
    // read-only — PostgreSQL is the truth, so retries go through kneegrade (e.g. `redeliver`).
    // The check is a hook of the view's own plugin, so it runs for every request the router
    // sends there, however the path was spelt (percent-encoding, case, dot segments); the Host
    // must name loopback too, so a page that rebinds a DNS name to 127.0.0.1 is refused.
    const queues = opts.queues;
    await app.register(
      async (view) => {
        view.addHook("onRequest", async (request, reply) => {
          if (
            !LOOPBACK.has(request.socket.remoteAddress ?? "") ||
            !loopbackHost(request.headers.host)
          ) {
            return reply.code(403).send({ error: "the queue view answers on 127.0.0.1 only" });
          }
        });
        const serverAdapter = new FastifyAdapter();
        createBullBoard({
          queues: queues.map((q) => new BullMQAdapter(q, { readOnlyMode: true })),
          serverAdapter,
        });
        serverAdapter.setBasePath("/queues");
        await view.register(serverAdapter.registerPlugin());
      },
      { prefix: "/queues" },
    );
  }
  await app.listen({ host: opts.host, port: opts.port });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : opts.port;
  return { port, readiness, close: () => app.close() };
}
