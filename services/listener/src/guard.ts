/**
 * The network guard: what an unauthenticated TCP peer may make the listener hold.
 *
 * dcmjs-dimse reads the socket with `socket.on("data")` and concatenates every chunk of a PDU until
 * the length its header declares has arrived, so on its own a header declaring 4 GiB makes the
 * listener buffer whatever the peer sends (136 MiB in one connection measured). Its association
 * timeout never fires for server sockets (it counts from a `connect` event that only client sockets
 * emit), and it does not bound the number of TCP connections. This module sits between the socket and
 * dcmjs-dimse (`guardConnection`: dcmjs-dimse's `data` listeners are moved behind the guard) and:
 *
 * - follows the PDU framing (6-byte header: type, reserved, uint32 BE length) across chunk
 *   boundaries, keeping only the header bytes it needs — never the PDU bodies — and closes the
 *   connection, after an A-ABORT, on an unknown PDU type, a PDU unexpected in its state, an
 *   A-ASSOCIATE-RQ longer than `maxAssociateRqBytes` or any later PDU longer than `maxPduBytes`;
 *   nothing it refuses reaches dcmjs-dimse;
 * - reads the fixed fields of the A-ASSOCIATE-RQ (PS3.8 9.3.2) before dcmjs-dimse sees them and
 *   answers an A-ASSOCIATE-RJ itself for a protocol version other than 1 or AE titles that are not
 *   printable ASCII;
 * - closes a connection whose association is not accepted within `associationTimeoutMs` (like
 *   the ARTIM timer of PS3.8 9.1.5) and aborts an association that stays silent for
 *   `idleTimeoutMs`, so an idle peer gives its MAX_ASSOCIATIONS slot back;
 * - counts connections in total and per peer address (`ConnectionLimiter`, connections.ts);
 * - hands dcmjs-dimse whole PDUs (`PduAssembler`, pdu.ts) instead of raw chunks: a C-STORE's data
 *   PDUs as views of the bytes received, every other PDU copied once.
 *
 * It never logs peer data beyond the PDU type and declared length.
 */
import type { Socket } from "node:net";
import type { RefusalDetails, RefusalReason } from "./connections.ts";
import {
  ABORT,
  abortPdu,
  associateRjPdu,
  checkAssociateRqFields,
  PDU_TYPE,
  PduAssembler,
  PduHeader,
  type RqVerdict,
} from "./pdu.ts";

/** Protocol version (2), reserved (2), called AE (16), calling AE (16): what the guard reads. */
const RQ_CHECKED_BYTES = 36;
/** The fixed part of an A-ASSOCIATE-RQ's variable field: 2 + 2 + 16 + 16 + 32 reserved. */
const RQ_FIXED_BYTES = 68;

export interface GuardLimits {
  /** Longest A-ASSOCIATE-RQ (PDU length field, header excluded). */
  maxAssociateRqBytes: number;
  /** Longest PDU after the association is accepted (PDU length field, header excluded). */
  maxPduBytes: number;
  /** From connection to accepted association. */
  associationTimeoutMs: number;
  /** Longest silence of an accepted association (no byte received or sent). */
  idleTimeoutMs: number;
}

export interface GuardOptions {
  limits: GuardLimits;
  /** Told of every refusal, once per connection (log and count it there). */
  onRefuse: (reason: RefusalReason, details: RefusalDetails) => void;
}

type Phase = "awaiting-rq" | "awaiting-accept" | "associated" | "closing";

/**
 * One connection's guard. `receive` takes every chunk the socket reads and hands on to `forward`
 * only the chunks of PDUs it accepts (the first ones held back, copied, until the RQ's AE titles
 * are read; a chunk that holds a refused PDU's header is not handed on). Memory per connection: a
 * few dozen bytes, whatever the peer declares or sends.
 */
export class ConnectionGuard {
  private phase: Phase = "awaiting-rq";
  private readonly header = new PduHeader();
  /** Body bytes of the current PDU still to come. */
  private bodyLeft = 0;
  /** The RQ's checked fields while they arrive; undefined once checked. */
  private rqFields: Buffer | undefined;
  private rqFill = 0;
  /** Chunks withheld from `forward` while the RQ's fields are incomplete (a few dozen bytes). */
  private held: Buffer[] = [];
  private holding = false;
  private artim: NodeJS.Timeout | undefined;
  private idle: NodeJS.Timeout | undefined;
  private lastActivity = 0;
  private lastBytesWritten = 0;

  constructor(
    private readonly socket: Socket,
    private readonly options: GuardOptions,
    private readonly forward: (chunk: Buffer) => void,
  ) {}

  /** Arms the association timer; call once, when the connection is set up. */
  start(): void {
    this.artim = setTimeout(() => {
      this.artim = undefined;
      if (this.phase === "associated") return;
      // Closing: an A-ASSOCIATE-RJ went out and the peer did not close (PS3.8 9.2, Sta13).
      if (this.phase === "closing") this.socket.destroy();
      else this.refuse("association-timeout", {}, "close");
    }, this.options.limits.associationTimeoutMs);
    this.artim.unref();
  }

  /** The SCP accepted the association: PDUs up to `maxPduBytes` may follow; idle timer on. */
  associationAccepted(): void {
    if (this.phase !== "awaiting-accept") return;
    this.phase = "associated";
    clearTimeout(this.artim);
    this.artim = undefined;
    this.lastActivity = Date.now();
    // Read once the A-ASSOCIATE-AC is written (the SCP writes it right after telling the guard).
    setImmediate(() => {
      this.lastBytesWritten = this.socket.bytesWritten;
    });
    this.armIdle();
  }

  /** The socket closed: timers off. */
  closed(): void {
    this.phase = "closing";
    this.held = [];
    clearTimeout(this.artim);
    clearTimeout(this.idle);
  }

  receive(chunk: Buffer): void {
    if (this.phase === "closing") return;
    if (this.phase === "associated") this.lastActivity = Date.now();
    let pos = 0;
    while (pos < chunk.length) {
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, chunk.length - pos);
        if (this.rqFields) {
          const take = Math.min(n, RQ_CHECKED_BYTES - this.rqFill);
          chunk.copy(this.rqFields, this.rqFill, pos, pos + take);
          this.rqFill += take;
          if (this.rqFill === RQ_CHECKED_BYTES) {
            const verdict = checkAssociateRqFields(this.rqFields);
            this.rqFields = undefined;
            if (verdict) {
              this.reject(verdict);
              return;
            }
            // The RQ may go on to dcmjs-dimse: first what was held back from earlier chunks.
            this.holding = false;
            const held = this.held;
            this.held = [];
            for (const part of held) this.forward(part);
          }
        }
        this.bodyLeft -= n;
        pos += n;
        continue;
      }
      pos += this.header.take(chunk, pos);
      if (!this.header.complete()) continue;
      if (!this.onHeader(this.header.type, this.header.length)) return;
    }
    if (this.holding) {
      // Copied: a few dozen bytes per connection (an A-ABORT and the RQ's first 42 bytes at
      // most), and the chunk's memory is not pinned.
      this.held.push(Buffer.from(chunk));
    } else {
      this.forward(chunk);
    }
  }

  /** Checks one PDU header; false when the connection is being closed. */
  private onHeader(type: number, length: number): boolean {
    const { limits } = this.options;
    const details = { pduType: type, declaredLength: length };
    if (type < PDU_TYPE.associateRq || type > PDU_TYPE.abort) {
      this.refuse("unknown-pdu-type", details, "abort", ABORT.unrecognizedPdu);
      return false;
    }
    if (this.phase === "awaiting-rq") {
      if (type === PDU_TYPE.abort && length === 4) {
        this.bodyLeft = length;
        return true;
      }
      if (type !== PDU_TYPE.associateRq) {
        this.refuse("unexpected-pdu", details, "abort", ABORT.unexpectedPdu);
        return false;
      }
      if (length > limits.maxAssociateRqBytes) {
        this.refuse("associate-rq-too-long", details, "abort", ABORT.invalidPduParameterValue);
        return false;
      }
      if (length < RQ_FIXED_BYTES) {
        this.refuse("malformed-associate-rq", details, "abort", ABORT.invalidPduParameterValue);
        return false;
      }
      this.phase = "awaiting-accept";
      this.rqFields = Buffer.alloc(RQ_CHECKED_BYTES);
      this.rqFill = 0;
      this.holding = true;
      this.bodyLeft = length;
      return true;
    }
    if (this.phase === "awaiting-accept") {
      // Only an A-ABORT may come before the answer (PS3.8 9.2, state Sta3).
      if (type !== PDU_TYPE.abort || length !== 4) {
        this.refuse("unexpected-pdu", details, "abort", ABORT.unexpectedPdu);
        return false;
      }
      this.bodyLeft = length;
      return true;
    }
    if (
      type === PDU_TYPE.associateRq ||
      type === PDU_TYPE.associateAc ||
      type === PDU_TYPE.associateRj
    ) {
      this.refuse("unexpected-pdu", details, "abort", ABORT.unexpectedPdu);
      return false;
    }
    if (length > limits.maxPduBytes) {
      this.refuse("pdu-too-long", details, "abort", ABORT.invalidPduParameterValue);
      return false;
    }
    this.bodyLeft = length;
    return true;
  }

  private reject(verdict: RqVerdict): void {
    this.options.onRefuse(verdict.reason, { pduType: PDU_TYPE.associateRq });
    this.stop();
    // The peer closes on the RJ; the association timer, still armed, closes the socket of a peer
    // that does not. Half-open sockets are not allowed, so the peer's FIN closes ours.
    this.phase = "closing";
    this.socket.end(associateRjPdu(verdict.result, verdict.source, verdict.rejectReason));
  }

  /** Stops forwarding; with "abort", sends an A-ABORT first. Destroys the socket. */
  private refuse(
    reason: RefusalReason,
    details: RefusalDetails,
    how: "abort" | "close",
    abortReason: number = ABORT.reasonNotSpecified,
  ): void {
    if (this.phase === "closing") return;
    this.options.onRefuse(reason, details);
    this.stop();
    this.closed();
    const socket = this.socket;
    if (how === "close" || socket.destroyed || !socket.writable) {
      socket.destroy();
      return;
    }
    // Destroyed once the A-ABORT is handed to the kernel, or after a second if the peer does not
    // read (its receive window full): nothing it sends meanwhile is kept.
    const fallback = setTimeout(() => socket.destroy(), 1000);
    fallback.unref();
    socket.write(abortPdu(ABORT.sourceServiceProvider, abortReason), () => {
      clearTimeout(fallback);
      socket.destroy();
    });
  }

  private stop(): void {
    this.held = [];
    this.holding = false;
    this.rqFields = undefined;
    clearTimeout(this.idle);
  }

  /**
   * Checks four times per idle timeout: bytes sent are only seen at a check, so a response
   * delays the abort by at most a quarter of the timeout more than needed.
   */
  private armIdle(remainingMs = this.options.limits.idleTimeoutMs): void {
    const step = Math.max(this.options.limits.idleTimeoutMs / 4, 100);
    this.idle = setTimeout(() => this.checkIdle(), Math.min(remainingMs, step));
    this.idle.unref();
  }

  private checkIdle(): void {
    if (this.phase !== "associated") return;
    const now = Date.now();
    // A response sent (e.g. a slow C-STORE-RSP) counts as activity too, as if sent just now.
    const written = this.socket.bytesWritten;
    if (written !== this.lastBytesWritten) {
      this.lastBytesWritten = written;
      this.lastActivity = Math.max(this.lastActivity, now);
    }
    const quiet = now - this.lastActivity;
    const limit = this.options.limits.idleTimeoutMs;
    if (quiet < limit) {
      this.armIdle(limit - quiet);
      return;
    }
    this.refuse("idle-timeout", {}, "abort", ABORT.reasonNotSpecified);
  }
}

/** Which whole PDUs the SCP behind a guard may see as views, and which it takes itself. */
export interface PduRouting<T> {
  /** The reader keeps nothing of `pdu` once it returns: it may get a view of the bytes received. */
  lends(attached: T, pdu: Buffer): boolean;
  /** `pdu` (one that `lends` allowed) was handled without the reader; it must not see it. */
  takes(attached: T, pdu: Buffer): boolean;
}

/**
 * Puts a guard between `socket` and the `data` listeners that `attach` registers on it (dcmjs-dimse
 * reads the socket with `socket.on("data")` in its constructor: see its Network._wrapSocket), then
 * starts the association timer. Throws when `attach` registered no `data` listener (a dcmjs-dimse
 * that reads the socket another way would bypass the guard). The socket's chunks may be views of a
 * reused receive buffer: nothing here keeps one past the call. `reader` may say which PDUs the
 * reader may be handed as views (it keeps nothing of them; the others are copied) and take some
 * of those itself instead of the reader.
 */
export function guardConnection<T>(
  socket: Socket,
  options: GuardOptions,
  attach: () => T,
  reader: PduRouting<T> = { lends: () => false, takes: () => false },
): { guard: ConnectionGuard; attached: T } {
  const before = new Set(socket.listeners("data"));
  const attached = attach();
  const readers = socket.listeners("data").filter((listener) => !before.has(listener)) as ((
    chunk: Buffer,
  ) => void)[];
  if (readers.length === 0) {
    throw new Error("the DICOM reader does not read the socket with 'data' listeners: not guarded");
  }
  for (const reader of readers) socket.off("data", reader);
  const assembler = new PduAssembler(
    (pdu) => {
      if (reader.takes(attached, pdu)) return;
      for (const read of readers) read.call(socket, pdu);
    },
    (pdu) => readers.length === 1 && reader.lends(attached, pdu),
  );
  const guard = new ConnectionGuard(socket, options, (chunk) => assembler.push(chunk));
  socket.on("data", (chunk: Buffer) => guard.receive(chunk));
  socket.once("close", () => {
    guard.closed();
    assembler.clear();
  });
  guard.start();
  return { guard, attached };
}
