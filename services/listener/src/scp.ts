/**
 * The DICOM Storage SCP (dcmjs-dimse): association policy (association.ts), C-ECHO, and C-STORE
 * streamed to the spool. The peer only hears "success" once the instance is fsynced, renamed into place and
 * recorded in PostgreSQL; anything else gets a failure status it can act on (resend later).
 */
import { open, readFile, unlink } from "node:fs/promises";
import type { Socket } from "node:net";
import type { Db } from "@kneegrade/db";
import {
  DIMSE_STATUS,
  DicomParseError,
  dimensionProblem,
  IncompleteHeaderError,
  isDicomUid,
  type LimitNote,
  pixelDataProblem,
  pixelEncodingProblem,
  type RadiographHeader,
  readRadiographHeader,
  structureProblem,
} from "@kneegrade/dicom";
import type { Logger } from "@kneegrade/log";
import type { Metrics } from "@kneegrade/ops";
import { type RoutingRules, routeInstance } from "@kneegrade/routing";
import dimse from "dcmjs-dimse";
import { type AssociationPolicy, associationRejection, negotiate } from "./association.ts";
import type { AuditLimiter } from "./audit.ts";
import { ingestInstance } from "./ingest.ts";
import { middleDataFragments } from "./pdu.ts";
import {
  freeSpoolBytesSync,
  ObjectBufferPool,
  type SpooledFile,
  SpoolWriter,
  UnsafeSpoolPathError,
} from "./spool.ts";

const { Scp, Dataset } = dimse;
const { CStoreRequest } = dimse.requests;
const { CEchoResponse, CStoreResponse } = dimse.responses;

type Association = dimse.association.Association;
type PresentationContext = dimse.association.PresentationContext;
type CStoreRequest = dimse.requests.CStoreRequest;
type CStoreResponseT = dimse.responses.CStoreResponse;
type DatasetT = dimse.Dataset;

export interface ScpPolicy extends AssociationPolicy {
  maxInstanceBytes: number;
  maxImageDimension: number;
  minFreeBytes: number;
  spoolDir: string;
  routingRules: RoutingRules;
}

export interface ScpDeps {
  db: Db;
  log: Logger;
  metrics: Metrics;
  policy: ScpPolicy;
  /** Open associations, shared by every connection of one listener. */
  associations: { open: number };
  /** Rate limit of refusal audit rows per peer (an unauthenticated flood cannot fill the table). */
  auditLimiter: AuditLimiter;
  /** Told of each association accepted, before the peer can answer (the guard, `guard.ts`). */
  onAssociationAccepted?: (socket: Socket) => void;
}

/** Objects up to this size are parsed whole before they are acknowledged (structureProblem). */
const STRUCTURE_CHECK_MAX_BYTES = 128 * 1024 * 1024;
/**
 * Largest object received into a pooled buffer (`ObjectBufferPool`) or read into the reused buffer
 * of `WholeFileReader`; larger ones get memory of their own.
 */
const REUSED_READ_MAX_BYTES = 16 * 1024 * 1024;
/** Associations that receive into a pooled buffer at once; others stream through fresh memory. */
const POOLED_OBJECT_BUFFERS = 2;

/**
 * Reads a spooled object whole for a check, into one buffer that is reused. A fresh buffer per
 * instance (6 MB for a CR) is external memory, and external memory is what makes V8 collect its
 * whole heap: `npm run bench:ingest` counted about one full collection per instance, the largest
 * CPU cost of ingest. Checks take their turn (each is a read and a parse of a few milliseconds).
 */
export class WholeFileReader {
  private buffer = Buffer.alloc(0);
  private turn: Promise<unknown> = Promise.resolve();

  constructor(private readonly maxReusedBytes = REUSED_READ_MAX_BYTES) {}

  /** Runs `use` on the file's first `size` bytes; they are valid only during that call. */
  read<T>(path: string, size: number, use: (bytes: Buffer) => T): Promise<T> {
    if (size > this.maxReusedBytes) return readFile(path).then(use);
    const run = this.turn.then(async () => {
      if (this.buffer.length < size) this.buffer = Buffer.allocUnsafe(size);
      const handle = await open(path, "r");
      let got = 0;
      try {
        while (got < size) {
          const { bytesRead } = await handle.read(this.buffer, got, size - got, got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
      } finally {
        await handle.close();
      }
      return use(this.buffer.subarray(0, got));
    });
    this.turn = run.catch(() => {});
    return run;
  }
}

/** Why a C-STORE failed, mapped to the DIMSE status the peer receives. */
class StoreFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Audit events of refusals: best effort, never delays or changes the answer to the peer, and
 * rate-limited per peer address (the limiter writes one summary row for what it held back).
 */
function refusalAuditor({ db, log, auditLimiter }: Pick<ScpDeps, "db" | "log" | "auditLimiter">) {
  return (
    event: string,
    actor: string,
    peer: string,
    details: Record<string, string | number | null>,
  ) => {
    if (!auditLimiter.allow(peer)) return;
    const sopInstanceUid =
      typeof details.sopInstanceUid === "string" && isDicomUid(details.sopInstanceUid)
        ? details.sopInstanceUid
        : null;
    db.auditEvent
      .create({ data: { event, actor, sopInstanceUid, details } })
      .catch((error: Error) =>
        log.error(
          { event: "audit.failed", audited: event, err: error.message },
          "audit not written",
        ),
      );
  };
}

/** The received object's header, read from its first bytes (or the whole file when needed). */
async function readHeader(file: SpooledFile): Promise<RadiographHeader> {
  try {
    try {
      return readRadiographHeader(file.head, file.isWholeFile);
    } catch (error) {
      if (!(error instanceof IncompleteHeaderError)) throw error;
      return readRadiographHeader(file.whole ?? (await readFile(file.tmpPath)), true);
    }
  } catch (error) {
    if (error instanceof DicomParseError) {
      const status =
        error.kind === "unparseable"
          ? DIMSE_STATUS.cannotUnderstand
          : DIMSE_STATUS.datasetDoesNotMatchSopClass;
      throw new StoreFailure(status, "INVALID_OBJECT", error.message);
    }
    throw error;
  }
}

/**
 * What is wrong with a received object before it is acknowledged: structure, pixel encoding,
 * dimensions, truncated pixel data, UIDs that differ from the C-STORE command.
 */
async function objectProblem(
  header: RadiographHeader,
  file: SpooledFile,
  request: CStoreRequest,
  policy: ScpPolicy,
  wholeFile: WholeFileReader,
): Promise<StoreFailure | undefined> {
  const { cannotUnderstand, datasetDoesNotMatchSopClass } = DIMSE_STATUS;
  // The whole object must parse (up to STRUCTURE_CHECK_MAX_BYTES; larger ones, beyond any
  // radiograph, are read only up to the pixel data, like every header).
  if (file.sizeBytes <= STRUCTURE_CHECK_MAX_BYTES) {
    // The bytes received are still in memory when the object fit its pooled buffer.
    const structure = file.whole
      ? structureProblem(file.whole)
      : await wholeFile.read(file.tmpPath, file.sizeBytes, structureProblem);
    if (structure) return new StoreFailure(cannotUnderstand, "INVALID_OBJECT", structure);
  }
  const encoding = pixelEncodingProblem(header);
  if (encoding) return new StoreFailure(cannotUnderstand, "ENCODING_MISMATCH", encoding);
  const dimensions = dimensionProblem(header, policy.maxImageDimension);
  if (dimensions)
    return new StoreFailure(datasetDoesNotMatchSopClass, "BAD_DIMENSIONS", dimensions);
  const truncated = pixelDataProblem(header, file.sizeBytes, file.tail);
  if (truncated) return new StoreFailure(cannotUnderstand, "TRUNCATED", truncated);
  if (
    header.sopInstanceUid !== request.getAffectedSopInstanceUid() ||
    header.sopClassUid !== request.getAffectedSopClassUid()
  ) {
    return new StoreFailure(
      datasetDoesNotMatchSopClass,
      "UID_MISMATCH",
      "SOP class/instance UID differ from the C-STORE command",
    );
  }
  return undefined;
}

/** Records the instance (spool path, study, outbox) in PostgreSQL; failures as DIMSE statuses. */
async function record(db: Db, input: Parameters<typeof ingestInstance>[1]) {
  try {
    return await ingestInstance(db, input);
  } catch (error) {
    if (error instanceof UnsafeSpoolPathError) {
      throw new StoreFailure(
        DIMSE_STATUS.datasetDoesNotMatchSopClass,
        "INVALID_UID",
        error.message,
      );
    }
    throw new StoreFailure(
      DIMSE_STATUS.outOfResources,
      "DB_UNAVAILABLE",
      `not recorded: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

/**
 * One received object, from the spool writer to PostgreSQL: the bytes on disk, the header read
 * and checked, the routing decided, the instance recorded. Any failure drops the file (the peer was
 * not told "success") and is a StoreFailure carrying the status the peer gets.
 */
async function storeReceived(
  db: Db,
  policy: ScpPolicy,
  request: CStoreRequest,
  writer: SpoolWriter | undefined,
  callingAet: string,
  wholeFile: WholeFileReader,
): Promise<{
  header: RadiographHeader;
  outcome: "knee" | "not_knee" | "resent";
  bytes: number;
  limitNotes: LimitNote[];
}> {
  if (!writer) throw new StoreFailure(DIMSE_STATUS.outOfResources, "NO_DATASET", "no data set");
  const file = await writer.finish();
  if ("refusal" in file) {
    throw new StoreFailure(
      DIMSE_STATUS.outOfResources,
      file.refusal,
      `not stored: ${file.refusal}`,
    );
  }
  try {
    const header = await readHeader(file);
    const problem = await objectProblem(header, file, request, policy, wholeFile);
    if (problem) throw problem;
    const routing = routeInstance(header, policy.routingRules);
    const ingested = await record(db, {
      header,
      routing,
      file,
      callingAet,
      spoolDir: policy.spoolDir,
    });
    const outcome =
      ingested.kind === "duplicate" ? "resent" : routing.decision === "KNEE" ? "knee" : "not_knee";
    return { header, outcome, bytes: file.sizeBytes, limitNotes: ingested.limitNotes };
  } catch (error) {
    await unlink(file.tmpPath).catch(() => {});
    throw error;
  } finally {
    file.release();
  }
}

/** What the SCPs of one listener's connections share. */
interface ScpShared extends ScpDeps {
  audit: ReturnType<typeof refusalAuditor>;
  wholeFile: WholeFileReader;
  objectBuffers: ObjectBufferPool;
}

/** Builds the Scp class for one listener (dcmjs-dimse instantiates it per connection). */
export function createScpClass(deps: ScpDeps) {
  const shared: ScpShared = {
    ...deps,
    audit: refusalAuditor(deps),
    wholeFile: new WholeFileReader(),
    objectBuffers: new ObjectBufferPool(REUSED_READ_MAX_BYTES, POOLED_OBJECT_BUFFERS),
  };
  return class ListenerScp extends KneegradeScp {
    constructor(socket: Socket, opts?: ConstructorParameters<typeof Scp>[1]) {
      super(socket, opts, shared);
    }
  };
}

/** One connection's SCP: association policy, C-ECHO, and C-STORE into the spool and the database. */
class KneegradeScp extends Scp {
  private association?: Association;
  private counted = false;
  /** The spool writer behind each placeholder data set handed to dcmjs-dimse. */
  private readonly received = new WeakMap<DatasetT, SpoolWriter>();
  private writers = new Set<SpoolWriter>();

  private readonly peer: Socket;

  constructor(
    socket: Socket,
    opts: ConstructorParameters<typeof Scp>[1] | undefined,
    private readonly shared: ScpShared,
  ) {
    super(socket, opts);
    this.peer = socket;
    this.on("close", () => this.onClose());
  }

  override associationRequested(association: Association): void {
    const { policy, log, metrics, audit } = this.shared;
    this.association = association;
    const calling = association.getCallingAeTitle().trim();
    const called = association.getCalledAeTitle().trim();
    const rejection = associationRejection(policy, this.shared.associations.open, calling, called);
    if (rejection) {
      const details = {
        callingAet: calling,
        calledAet: called,
        reason: rejection.text,
        peer: this.peer.remoteAddress ?? null,
      };
      log.warn({ event: "association.rejected", ...details }, "association rejected");
      metrics.associationsRefused.inc({ reason: rejection.text });
      audit("association.rejected", calling, details.peer ?? "", details);
      this.sendAssociationReject(rejection.result, rejection.source, rejection.reason);
      return;
    }
    for (const { context } of association.getPresentationContexts()) {
      negotiate(context);
    }
    this.shared.associations.open += 1;
    metrics.associationsOpen.set(this.shared.associations.open);
    this.counted = true;
    log.info({ event: "association.accepted", callingAet: calling }, "association accepted");
    this.shared.onAssociationAccepted?.(this.peer);
    this.sendAssociationAccept();
  }

  /**
   * Whether the association is receiving a C-STORE's data set: dcmjs-dimse then writes each data
   * PDV into the spool writer, which copies it at once, and keeps nothing of the PDU, so the guard
   * may hand it views of the receive buffer (guard.ts). dcmjs-dimse keeps the current request in
   * `dimse`; should that change, this is false and every PDU is copied.
   */
  receivesStoreData(): boolean {
    return (this as unknown as { dimse?: unknown }).dimse instanceof CStoreRequest;
  }

  /**
   * Writes the data fragments of a P-DATA-TF straight into the spool writer of the C-STORE under
   * way, when the PDU ends no data set: all dcmjs-dimse would do with it is the same write, after
   * building a handful of objects and promises per PDU (most of its CPU per instance). The PDU
   * with the last fragment still goes through dcmjs-dimse, which ends the data set and answers.
   * Uses dcmjs-dimse's fields `dimse`, `dimseStoreStream` (its current request and writer) and
   * `lastPduTime` (its PDU timeout); should they change, this takes nothing.
   */
  takeDataPdu(pdu: Buffer): boolean {
    const network = this as unknown as {
      dimse?: unknown;
      dimseStoreStream?: unknown;
      lastPduTime?: number;
    };
    const writer = network.dimseStoreStream;
    if (!(network.dimse instanceof CStoreRequest) || !(writer instanceof SpoolWriter)) return false;
    const values = middleDataFragments(pdu);
    if (!values) return false;
    network.lastPduTime = Date.now();
    for (const value of values) writer.write(value);
    return true;
  }

  override associationReleaseRequested(): void {
    this.sendAssociationReleaseResponse();
  }

  override abort(): void {
    // dcmjs-dimse's default only logs; a peer that aborts must be let go at once.
    this.shared.log.warn({ event: "association.aborted" }, "association aborted by peer");
    this.peer.destroy();
  }

  override cEchoRequest(
    request: dimse.requests.CEchoRequest,
    callback: (r: dimse.responses.CEchoResponse) => void,
  ) {
    const response = CEchoResponse.fromRequest(request);
    response.setStatus(DIMSE_STATUS.success);
    callback(response);
  }

  override createStoreWritableStream(context: PresentationContext, request: CStoreRequest) {
    const { policy } = this.shared;
    // Below the watermark nothing is written at all; the bytes are read off the wire and dropped.
    const full = freeSpoolBytesSync(policy.spoolDir) < policy.minFreeBytes;
    const writer = new SpoolWriter(
      policy.spoolDir,
      {
        mediaStorageSopClassUid: request.getAffectedSopClassUid(),
        mediaStorageSopInstanceUid: request.getAffectedSopInstanceUid(),
        transferSyntaxUid: context.getAcceptedTransferSyntaxUid() ?? "",
        sourceAeTitle: this.association?.getCallingAeTitle().trim(),
      },
      policy.maxInstanceBytes,
      full ? "disk-watermark" : undefined,
      this.shared.objectBuffers,
    );
    this.writers.add(writer);
    return writer;
  }

  override createDatasetFromStoreWritableStream(
    writable: SpoolWriter,
    context: PresentationContext,
    callback: (dataset: DatasetT) => void,
  ) {
    // The real data set stays on disk; dcmjs-dimse gets an empty placeholder to carry along.
    const placeholder = new Dataset({}, context.getAcceptedTransferSyntaxUid());
    this.received.set(placeholder, writable);
    callback(placeholder);
  }

  override cStoreRequest(request: CStoreRequest, callback: (response: CStoreResponseT) => void) {
    const { db, policy, wholeFile, metrics, log, audit } = this.shared;
    const response = CStoreResponse.fromRequest(request);
    const received = this.received.get(request.getDataset() as DatasetT);
    const calling = this.association?.getCallingAeTitle().trim() ?? "";
    if (received) this.writers.delete(received);
    storeReceived(db, policy, request, received, calling, wholeFile)
      .then(({ header, outcome, bytes, limitNotes }) => {
        response.setStatus(DIMSE_STATUS.success);
        metrics.instancesReceived.inc({ outcome });
        metrics.bytesReceived.inc(bytes);
        log.info(
          {
            event: "instance.stored",
            studyInstanceUid: header.studyInstanceUid,
            sopInstanceUid: header.sopInstanceUid,
          },
          "instance stored",
        );
        if (limitNotes.length > 0) {
          // Tag, VR and rule only: the values are patient data.
          log.warn(
            {
              event: "instance.header-limits",
              studyInstanceUid: header.studyInstanceUid,
              sopInstanceUid: header.sopInstanceUid,
              attributes: limitNotes,
            },
            "header values beyond their DICOM limits: stored truncated or dropped",
          );
        }
      })
      .catch((error: unknown) => {
        const failure =
          error instanceof StoreFailure
            ? error
            : new StoreFailure(
                DIMSE_STATUS.outOfResources,
                "STORE_FAILED",
                error instanceof Error ? error.message : String(error),
              );
        response.setStatus(failure.status);
        response.setErrorComment(failure.message.slice(0, 64));
        metrics.instancesRefused.inc({ code: failure.code });
        const affected = request.getAffectedSopInstanceUid();
        // Only a valid UID is logged or audited as such: the peer's bytes are not trusted.
        const sopInstanceUid = isDicomUid(affected) ? affected : null;
        log.error(
          { event: "instance.refused", code: failure.code, sopInstanceUid, err: failure.message },
          "instance not stored",
        );
        audit("instance.refused", calling, this.peer.remoteAddress ?? "", {
          code: failure.code,
          status: failure.status,
          message: failure.message,
          sopInstanceUid,
        });
      })
      .finally(() => callback(response));
  }

  private onClose(): void {
    if (this.counted) {
      this.shared.associations.open -= 1;
      this.shared.metrics.associationsOpen.set(this.shared.associations.open);
    }
    this.counted = false;
    // A data set that never completed was never acknowledged: drop its bytes.
    for (const writer of this.writers) void writer.discard();
    this.writers.clear();
  }
}
