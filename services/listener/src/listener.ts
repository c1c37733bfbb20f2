/**
 * The listener service: a DICOM Storage SCP on LISTENER_PORT (optionally TLS) plus the study
 * assembler that turns stable knee studies into `grade-study` jobs. Every connection is counted
 * against the connection caps (`server.ts`) and passes the network guard (`guard.ts`): PDU framing
 * limits, association and idle timeouts, before dcmjs-dimse reads a byte.
 */
import type net from "node:net";
import type { Config } from "@kneegrade/config";
import { QUEUES } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import { errorFields, type Logger, type LoglevelLike, routeLoglevel } from "@kneegrade/log";
import { createMetrics, type Metrics } from "@kneegrade/ops";
import { createQueue, warnWithoutRedisPersistence } from "@kneegrade/queue";
import { loadRoutingRules, type RoutingRules } from "@kneegrade/routing";
import dimse from "dcmjs-dimse";
import { startAssembler } from "./assembler.ts";
import { type AuditLimiter, createAuditLimiter } from "./audit.ts";
import { peerAddress, RefusalCounter, type RefusalReason } from "./connections.ts";
import { type ConnectionGuard, type GuardLimits, guardConnection } from "./guard.ts";
import { isDataOnlyPDataTf } from "./pdu.ts";
import { startRetention } from "./retention.ts";
import { createScpClass } from "./scp.ts";
import { createDicomServer, type RefusalReporter } from "./server.ts";
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
  await prepareListener(config, log);
  const auditLimiter = createAuditLimiter({ db, log, perMinute: config.AUDIT_REFUSALS_PER_MINUTE });
  const limits = guardLimits(config);
  const refusals = new RefusalCounter();
  const refused = refusalReporter(refusals, metrics, log);
  const connect = scpConnector({
    config,
    db,
    log,
    metrics,
    auditLimiter,
    routingRules,
    limits,
    refused,
  });
  const dicom = createDicomServer({
    config,
    associationTimeoutMs: limits.associationTimeoutMs,
    refused,
    onConnection: connect,
  });
  const port = await dicom.listen();
  log.info(
    { event: "listener.started", port, aet: config.LISTENER_AET, tls: dicom.tls },
    "DICOM listener ready",
  );
  const pipeline = await startPipeline(config, db, log);

  return {
    port,
    refusals: () => ({ ...refusals.counts }),
    async close() {
      await dicom.close();
      await pipeline.stop();
      await auditLimiter.stop();
      log.info({ event: "listener.stopped" }, "DICOM listener stopped");
    },
  };
}

/** Clears what a crash left in the spool and warns of an open listener. */
async function prepareListener(config: Config, log: Logger): Promise<void> {
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
}

function guardLimits(config: Config): GuardLimits {
  return {
    maxAssociateRqBytes: config.LISTENER_MAX_ASSOCIATE_RQ_BYTES,
    maxPduBytes: config.LISTENER_MAX_PDU_BYTES,
    associationTimeoutMs: config.LISTENER_ASSOCIATION_TIMEOUT_SECONDS * 1000,
    idleTimeoutMs: config.LISTENER_IDLE_TIMEOUT_SECONDS * 1000,
  };
}

/** Counted always, logged throttled per reason; never anything but the address and framing. */
function refusalReporter(refusals: RefusalCounter, metrics: Metrics, log: Logger): RefusalReporter {
  return (reason, peer, details = {}) => {
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
}

interface ScpSettings {
  config: Config;
  db: Db;
  log: Logger;
  metrics: Metrics;
  auditLimiter: AuditLimiter;
  routingRules: RoutingRules;
  limits: GuardLimits;
  refused: RefusalReporter;
}

/** What each admitted connection gets: the network guard in front of a dcmjs-dimse SCP. */
function scpConnector(settings: ScpSettings): (socket: net.Socket) => void {
  const { config, log, limits, refused } = settings;
  const guards = new WeakMap<net.Socket, ConnectionGuard>();
  const ScpClass = createScpClass({
    db: settings.db,
    log,
    metrics: settings.metrics,
    auditLimiter: settings.auditLimiter,
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
      routingRules: settings.routingRules,
    },
  });
  return (socket) => {
    socket.setNoDelay(true);
    const peer = peerAddress(socket);
    const { guard, attached: scp } = guardConnection(
      socket,
      { limits, onRefuse: (reason, details) => refused(reason, peer, details) },
      () => new ScpClass(socket, DIMSE_OPTIONS),
      {
        lends: (attached, pdu) => attached.receivesStoreData() && isDataOnlyPDataTf(pdu),
        takes: (attached, pdu) => attached.takeDataPdu(pdu),
      },
    );
    guards.set(socket, guard);
    (scp as unknown as { connected: boolean }).connected = true;
    scp.on("networkError", (error: Error) => {
      log.warn({ event: "association.network-error", err: error.message }, "network error");
      socket.destroy();
    });
  };
}

/** The grade-study queue, the study assembler that feeds it and the spool's retention sweep. */
async function startPipeline(
  config: Config,
  db: Db,
  log: Logger,
): Promise<{ stop(): Promise<void> }> {
  const queue = createQueue(QUEUES.gradeStudy, config);
  queue.on("error", (error) =>
    log.error({ event: "queue.error", err: errorFields(error) }, "Redis error (grade-study queue)"),
  );
  await warnWithoutRedisPersistence(config.REDIS_URL, log);
  const assembler = startAssembler({ db, queue, stableSeconds: config.STUDY_STABLE_SECONDS, log });
  const retention = startRetention({ db, retentionDays: config.SPOOL_RETENTION_DAYS, log });
  return {
    async stop() {
      await assembler.stop();
      await retention.stop();
      await queue.close();
    },
  };
}
