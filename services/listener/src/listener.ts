/**
 * The listener service: a DICOM Storage SCP on LISTENER_PORT (optionally TLS) plus the study
 * assembler that turns stable knee studies into `grade-study` jobs. Every connection passes the
 * network guard (`guard.ts`) first: connection caps, PDU framing limits, association and idle
 * timeouts, before dcmjs-dimse reads a byte.
 */
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import type { Config } from "@kneegrade/config";
import { QUEUES } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import { loadRoutingRules, type RoutingRules } from "@kneegrade/dicom";
import { errorFields, type Logger, type LoglevelLike, routeLoglevel } from "@kneegrade/log";
import { createMetrics, type Metrics } from "@kneegrade/ops";
import { createQueue, warnWithoutRedisPersistence } from "@kneegrade/queue";
import dimse from "dcmjs-dimse";
import { startAssembler } from "./assembler.ts";
import { createAuditLimiter } from "./audit.ts";
import {
  type ConnectionGuard,
  ConnectionLimiter,
  type GuardLimits,
  guardConnection,
  peerAddress,
  RefusalCounter,
  type RefusalDetails,
  type RefusalReason,
} from "./guard.ts";
import { startRetention } from "./retention.ts";
import { createScpClass } from "./scp.ts";
import { prepareSpool } from "./spool.ts";

export interface RunningListener {
  port: number;
  /** Connections refused or closed by the network guard since start, by reason. */
  refusals(): Partial<Record<RefusalReason, number>>;
  close(): Promise<void>;
}

const DIMSE_OPTIONS = {
  // dcmjs-dimse's association timeout never fires on server sockets (the guard's does); its PDU
  // timeout aborts an association whose next PDU takes a minute to arrive (a trickling sender).
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
  /** Where to count what arrives (the process's ops server serves it); a private one if absent. */
  metrics: Metrics = createMetrics(),
): Promise<RunningListener> {
  // dcmjs-dimse logs every PDU at info level in plain text: keep its warnings and errors, as JSON.
  routeLoglevel(dimse.log as unknown as LoglevelLike, log, "dimse");
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

  const auditLimiter = createAuditLimiter({ db, log, perMinute: config.AUDIT_REFUSALS_PER_MINUTE });
  const limits: GuardLimits = {
    maxAssociateRqBytes: config.LISTENER_MAX_ASSOCIATE_RQ_BYTES,
    maxPduBytes: config.LISTENER_MAX_PDU_BYTES,
    associationTimeoutMs: config.LISTENER_ASSOCIATION_TIMEOUT_SECONDS * 1000,
    idleTimeoutMs: config.LISTENER_IDLE_TIMEOUT_SECONDS * 1000,
  };
  const limiter = new ConnectionLimiter(
    config.LISTENER_MAX_CONNECTIONS,
    config.LISTENER_MAX_CONNECTIONS_PER_PEER,
  );
  const refusals = new RefusalCounter();
  /** Counted always, logged throttled per reason; never anything but the address and framing. */
  const refused = (reason: RefusalReason, peer: string, details: RefusalDetails = {}) => {
    metrics.connectionsRefused.inc({ reason });
    const { log: logIt, suppressed } = refusals.record(reason);
    if (!logIt) return;
    log.warn(
      {
        event: "connection.refused",
        reason,
        peer,
        ...details,
        ...(suppressed ? { suppressed } : {}),
      },
      "connection refused by the network guard",
    );
  };
  const guards = new WeakMap<net.Socket, ConnectionGuard>();

  const ScpClass = createScpClass({
    db,
    log,
    metrics,
    auditLimiter,
    onAssociationAccepted: (socket) => guards.get(socket)?.associationAccepted(),
    associations: { open: 0 },
    policy: {
      calledAet: config.LISTENER_AET,
      allowedCallingAets: config.ALLOWED_CALLING_AETS,
      maxAssociations: config.MAX_ASSOCIATIONS,
      maxInstanceBytes: config.MAX_INSTANCE_MB * 1024 * 1024,
      maxImageDimension: config.MAX_IMAGE_DIMENSION,
      minFreeBytes: config.SPOOL_MIN_FREE_MB * 1024 * 1024,
      spoolDir: config.SPOOL_DIR,
      routingRules,
    },
  });

  const sockets = new Set<net.Socket>();
  /** Every TCP connection, before TLS: counted against the caps, or closed at once. */
  const onTcpConnection = (raw: net.Socket): boolean => {
    const peer = peerAddress(raw);
    const over = limiter.admit(peer);
    if (over) {
      raw.destroy();
      refused(over, peer);
      return false;
    }
    sockets.add(raw);
    raw.once("close", () => {
      sockets.delete(raw);
      limiter.release(peer);
    });
    return true;
  };
  /** TLS handshakes under way, by peer address and port. */
  const handshakes = new Map<string, NodeJS.Timeout>();
  const onConnection = (socket: net.Socket) => {
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    clearTimeout(handshakes.get(key));
    handshakes.delete(key);
    if (socket.destroyed) return;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.setNoDelay(true);
    const peer = peerAddress(socket);
    const { guard, attached: scp } = guardConnection(
      socket,
      { limits, onRefuse: (reason, details) => refused(reason, peer, details) },
      () => new ScpClass(socket, DIMSE_OPTIONS),
    );
    guards.set(socket, guard);
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
    : net.createServer();
  if (tlsEnabled) {
    // The TLS handshake has the association timeout of its own (a peer that connects and never
    // says hello); the guard's timer starts once it is done.
    server.on("connection", (raw: net.Socket) => {
      if (!onTcpConnection(raw)) return;
      const key = `${raw.remoteAddress}:${raw.remotePort}`;
      const timer = setTimeout(() => {
        raw.destroy();
        refused("association-timeout", peerAddress(raw));
      }, limits.associationTimeoutMs);
      timer.unref();
      handshakes.set(key, timer);
      raw.once("close", () => {
        clearTimeout(timer);
        if (handshakes.get(key) === timer) handshakes.delete(key);
      });
    });
  } else {
    server.on("connection", (socket: net.Socket) => {
      if (onTcpConnection(socket)) onConnection(socket);
    });
  }

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
  queue.on("error", (error) =>
    log.error({ event: "queue.error", err: errorFields(error) }, "Redis error (grade-study queue)"),
  );
  await warnWithoutRedisPersistence(config.REDIS_URL, log);
  const assembler = startAssembler({ db, queue, stableSeconds: config.STUDY_STABLE_SECONDS, log });
  const retention = startRetention({ db, retentionDays: config.SPOOL_RETENTION_DAYS, log });

  return {
    port,
    refusals: () => ({ ...refusals.counts }),
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      await assembler.stop();
      await retention.stop();
      await auditLimiter.stop();
      await queue.close();
      log.info({ event: "listener.stopped" }, "DICOM listener stopped");
    },
  };
}
