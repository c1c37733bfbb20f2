/**
 * The listener service: a DICOM Storage SCP on LISTENER_PORT (optionally TLS) plus the study
 * assembler that turns stable knee studies into `grade-study` jobs.
 */
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import type { Config } from "@kneegrade/config";
import { QUEUES } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import { loadRoutingRules, type RoutingRules } from "@kneegrade/dicom";
import type { Logger } from "@kneegrade/log";
import { createQueue } from "@kneegrade/queue";
import dimse from "dcmjs-dimse";
import { startAssembler } from "./assembler.ts";
import { startRetention } from "./retention.ts";
import { createScpClass } from "./scp.ts";
import { prepareSpool } from "./spool.ts";

export interface RunningListener {
  port: number;
  close(): Promise<void>;
}

const DIMSE_OPTIONS = {
  // Lets a stuck peer go instead of holding an association slot forever.
  associationTimeout: 30_000,
  pduTimeout: 60_000,
};

/**
 * Starts the SCP and the assembler. `routingRules` defaults to ROUTING_RULES_FILE (or the built-in
 * rules); `kneegrade serve` loads them before it connects to anything, so a bad file fails fast.
 */
export async function startListener(
  config: Config,
  db: Db,
  log: Logger,
  routingRules: RoutingRules = loadRoutingRules(config.ROUTING_RULES_FILE),
): Promise<RunningListener> {
  // dcmjs-dimse logs every PDU at info level: keep only its errors.
  dimse.log.setLevel("error");
  const removed = await prepareSpool(config.SPOOL_DIR);
  if (removed > 0) {
    log.warn(
      { event: "spool.cleaned", files: removed },
      "removed half-received files from a crash",
    );
  }
  if (config.ALLOWED_CALLING_AETS.length === 0) {
    log.warn(
      { event: "config.open-listener" },
      "ALLOWED_CALLING_AETS is empty: any calling AE title may store to kneegrade",
    );
  }

  const ScpClass = createScpClass({
    db,
    log,
    associations: { open: 0 },
    policy: {
      calledAet: config.LISTENER_AET,
      allowedCallingAets: config.ALLOWED_CALLING_AETS,
      maxAssociations: config.MAX_ASSOCIATIONS,
      maxInstanceBytes: config.MAX_INSTANCE_MB * 1024 * 1024,
      minFreeBytes: config.SPOOL_MIN_FREE_MB * 1024 * 1024,
      spoolDir: config.SPOOL_DIR,
      routingRules,
    },
  });

  const sockets = new Set<net.Socket>();
  const onConnection = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.setNoDelay(true);
    const scp = new ScpClass(socket, DIMSE_OPTIONS);
    (scp as unknown as { connected: boolean }).connected = true;
    scp.on("networkError", (error: Error) => {
      log.warn({ event: "association.network-error", err: error.message }, "network error");
      socket.destroy();
    });
  };
  const tlsEnabled = config.LISTENER_TLS_KEY !== undefined;
  const server = tlsEnabled
    ? tls.createServer(
        {
          key: readFileSync(config.LISTENER_TLS_KEY!),
          cert: readFileSync(config.LISTENER_TLS_CERT!),
          ...(config.LISTENER_TLS_CA
            ? {
                ca: readFileSync(config.LISTENER_TLS_CA),
                requestCert: true,
                rejectUnauthorized: true,
              }
            : {}),
        },
        onConnection,
      )
    : net.createServer(onConnection);

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.LISTENER_PORT, config.LISTENER_HOST, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.LISTENER_PORT;
  log.info(
    { event: "listener.started", port, aet: config.LISTENER_AET, tls: tlsEnabled },
    "DICOM listener ready",
  );

  const queue = createQueue(QUEUES.gradeStudy, config);
  const assembler = startAssembler({ db, queue, stableSeconds: config.STUDY_STABLE_SECONDS, log });
  const retention = startRetention({ db, retentionDays: config.SPOOL_RETENTION_DAYS, log });

  return {
    port,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      await assembler.stop();
      await retention.stop();
      await queue.close();
      log.info({ event: "listener.stopped" }, "DICOM listener stopped");
    },
  };
}
