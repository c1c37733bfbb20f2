/**
 * `kneegrade serve`: the four services (listener, worker, reporter, review pages) in one
 * process, or the ones named with --only, and one ops
 * server (METRICS_HOST:METRICS_PORT) for the process: /metrics of every service it runs, /healthz,
 * /readyz with the dependencies of those services, /queues (loopback only).
 */
import type { Config } from "@kneegrade/config";
import { QUEUES } from "@kneegrade/contracts";
import { createDb } from "@kneegrade/db";
import { startListener } from "@kneegrade/listener";
import { errorFields, type Logger } from "@kneegrade/log";
import {
  cachedCheck,
  createMetrics,
  type MetricSource,
  postgresCheck,
  type ReadinessCheck,
  redisCheck,
  registerStateGauges,
  startOpsServer,
} from "@kneegrade/ops";
import { createQueue } from "@kneegrade/queue";
import { startReporter } from "@kneegrade/reporter";
import { startReview } from "@kneegrade/review";
import { loadRoutingRules } from "@kneegrade/routing";
import { type RunningWorker, startWorker, startWorkerThread } from "@kneegrade/worker";

export const SERVICES = ["listener", "worker", "reporter", "review"] as const;
export type ServiceName = (typeof SERVICES)[number];

export function parseOnly(value: string | undefined): ServiceName[] {
  if (!value) return [...SERVICES];
  const names = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !(SERVICES as readonly string[]).includes(n));
  if (unknown.length > 0 || names.length === 0) {
    throw new Error(
      `--only: unknown service ${unknown.join(", ") || "(none)"}; use ${SERVICES.join(",")}`,
    );
  }
  return [...new Set(names)] as ServiceName[];
}

export async function serve(config: Config, services: ServiceName[], log: Logger) {
  // Everything that can be checked without a connection first.
  const routingRules = loadRoutingRules(config.ROUTING_RULES_FILE);
  const db = createDb(config.DATABASE_URL);
  await db.$queryRaw`SELECT 1`.catch((error: Error) => {
    // Prisma's message embeds the invocation; its last line says what went wrong.
    const reason = error.message.trim().split("\n").pop();
    throw new Error(`PostgreSQL at DATABASE_URL is not reachable: ${reason}`);
  });
  const running: { close(): Promise<void> }[] = [];

  // The ops server answers first (liveness while a model loads); it is ready once every service
  // has started and every dependency of those services answers.
  const metrics = createMetrics({ defaultMetrics: true });
  const queues = [createQueue(QUEUES.gradeStudy, config), createQueue(QUEUES.reportStudy, config)];
  for (const queue of queues) {
    queue.on("error", (error) =>
      log.warn({ event: "ops.queue-error", queue: queue.name, err: errorFields(error) }, "Redis"),
    );
  }
  registerStateGauges(metrics, { db, queues });
  const redis = redisCheck(config.REDIS_URL);
  let started = false;
  const checks: Record<string, ReadinessCheck> = {
    started: async () => {
      if (!started) throw new Error("services still starting");
    },
    postgres: postgresCheck(db),
    redis: redis.check,
  };
  const metricSources: MetricSource[] = [];
  const ops = await startOpsServer({
    host: config.METRICS_HOST,
    port: config.METRICS_PORT,
    metrics,
    checks,
    queues,
    metricSources,
  }).catch((error: Error) => {
    throw new Error(
      `ops server cannot listen on ${config.METRICS_HOST}:${config.METRICS_PORT} (METRICS_HOST, METRICS_PORT): ${error.message}`,
    );
  });
  log.info(
    { event: "ops.started", port: ops.port },
    "ops server: /metrics /healthz /readyz /queues",
  );

  if (services.includes("listener")) {
    running.push(
      await startListener(config, db, log.child({ service: "listener" }), routingRules, metrics),
    );
  }
  if (services.includes("worker")) {
    const workerLog = log.child({ service: "worker" });
    // With other services in this process the worker grades on its own thread (SERVE_WORKER_THREAD).
    const inThread = config.SERVE_WORKER_THREAD && services.length > 1;
    let worker: RunningWorker;
    if (inThread) {
      const thread = await startWorkerThread(config, workerLog);
      metricSources.push(thread.metrics);
      worker = thread;
    } else {
      worker = await startWorker(config, db, workerLog, metrics);
    }
    checks.model = async () => {
      if (!worker.model.ok) throw new Error(`no usable model: ${worker.model.reason}`);
    };
    running.push(worker);
  }
  if (services.includes("reporter")) {
    const reporter = await startReporter(config, db, log.child({ service: "reporter" }), metrics);
    // One C-ECHO per 15 s at most, however many probes ask.
    checks.pacs = cachedCheck(reporter.checkPacs, 15_000);
    // Likewise the result outputs that are configured: the RIS's FHIR server and HL7 peer.
    if (reporter.outputs.fhir) checks.fhir = cachedCheck(reporter.outputs.fhir.check, 15_000);
    if (reporter.outputs.hl7) checks.hl7 = cachedCheck(reporter.outputs.hl7.check, 15_000);
    running.push(reporter);
  }
  if (services.includes("review")) {
    running.push(await startReview(config, db, log.child({ service: "review" })));
  }
  started = true;
  log.info({ event: "serve.started", services, metricsPort: ops.port }, "kneegrade running");

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ event: "serve.stopping", signal }, "shutting down");
    started = false;
    for (const r of running.reverse()) await r.close();
    await ops.close();
    await Promise.all(queues.map((q) => q.close()));
    redis.close();
    await db.$disconnect();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}
