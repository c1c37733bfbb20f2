/** `kneegrade serve`: the four services in one process, or the ones named with --only. */
import type { Config } from "@kneegrade/config";
import { createDb } from "@kneegrade/db";
import { loadRoutingRules } from "@kneegrade/dicom";
import { startListener } from "@kneegrade/listener";
import type { Logger } from "@kneegrade/log";
import { startReporter } from "@kneegrade/reporter";
import { startReview } from "@kneegrade/review";
import { startWorker } from "@kneegrade/worker";

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
  if (services.includes("listener"))
    running.push(await startListener(config, db, log.child({ service: "listener" }), routingRules));
  if (services.includes("worker"))
    running.push(await startWorker(config, db, log.child({ service: "worker" })));
  if (services.includes("reporter"))
    running.push(await startReporter(config, db, log.child({ service: "reporter" })));
  if (services.includes("review"))
    running.push(await startReview(config, db, log.child({ service: "review" })));
  log.info({ event: "serve.started", services }, "kneegrade running");

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ event: "serve.stopping", signal }, "shutting down");
    for (const r of running.reverse()) await r.close();
    await db.$disconnect();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}
