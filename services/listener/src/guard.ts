/**
 * The network guard: what an unauthenticated TCP peer may make the listener hold.
 *
 * dcmjs-dimse reads the socket with `socket.on("data")` and concatenates every chunk of a PDU until
 * the length its header declares has arrived, so a header declaring 4 GiB made the listener buffer
 * whatever the peer sent (136 MiB in one connection was measured). Its association timeout never
 * fires for server sockets (it counts from a `connect` event that only client sockets emit), and
 * nothing bounded the number of TCP connections. This module sits between the socket and
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
 * - counts connections in total and per peer address (`ConnectionLimiter`);
 * - hands dcmjs-dimse whole PDUs (`PduAssembler`), each copied at most once, instead of raw chunks.
 *
 * It never logs peer data beyond the PDU type and declared length.
 */
import type { Socket } from "node:net";

/** PDU types (PS3.8 9.3.1). */
export const PDU_TYPE = {
  associateRq: 0x01,
  associateAc: 0x02,
  associateRj: 0x03,
  dataTf: 0x04,
  releaseRq: 0x05,
  releaseRp: 0x06,
  abort: 0x07,
} as const;

/** A-ASSOCIATE-RJ result, source and reason values (PS3.8 Table 9-21). */
export const REJECT = {
  permanent: 1,
  sourceServiceUser: 1,
  sourceServiceProviderAcse: 2,
  /** Source 1 (service user). */
  callingAeNotRecognized: 3,
  calledAeNotRecognized: 7,
  /** Source 2 (service provider, ACSE). */
  protocolVersionNotSupported: 2,
} as const;

/** A-ABORT source and reason values (PS3.8 Table 9-26). */
export const ABORT = {
  sourceServiceProvider: 2,
  reasonNotSpecified: 0,
  unrecognizedPdu: 1,
  unexpectedPdu: 2,
  invalidPduParameterValue: 6,
} as const;

const HEADER_BYTES = 6;
/** Protocol version (2), reserved (2), called AE (16), calling AE (16): what the guard reads. */
const RQ_CHECKED_BYTES = 36;
/** The fixed part of an A-ASSOCIATE-RQ's variable field: 2 + 2 + 16 + 16 + 32 reserved. */
const RQ_FIXED_BYTES = 68;

/** Why a connection was refused or closed by the guard (log field `reason`, and the counters). */
export type RefusalReason =
  | "too-many-connections"
  | "too-many-connections-from-peer"
  | "unknown-pdu-type"
  | "unexpected-pdu"
  | "associate-rq-too-long"
  | "malformed-associate-rq"
  | "pdu-too-long"
  | "protocol-version"
  | "bad-calling-ae"
  | "bad-called-ae"
  | "association-timeout"
  | "idle-timeout";

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

export interface RefusalDetails {
  pduType?: number;
  declaredLength?: number;
}

export interface GuardOptions {
  limits: GuardLimits;
  /** Told of every refusal, once per connection (log and count it there). */
  onRefuse: (reason: RefusalReason, details: RefusalDetails) => void;
}

/** An A-ABORT PDU. */
export function abortPdu(source: number, reason: number): Buffer {
  return Buffer.from([PDU_TYPE.abort, 0, 0, 0, 0, 4, 0, 0, source, reason]);
}

/** An A-ASSOCIATE-RJ PDU. */
export function associateRjPdu(result: number, source: number, reason: number): Buffer {
  return Buffer.from([PDU_TYPE.associateRj, 0, 0, 0, 0, 4, 0, result, source, reason]);
}

/**
 * An AE title field as sent: 16 bytes of printable ASCII (0x20-0x7E) without backslash, not all
 * spaces (PS3.5 6.2, AE value representation; PS3.8 9.3.2 pads it with spaces).
 */
export function isValidAeTitleField(field: Uint8Array): boolean {
  let significant = false;
  for (const byte of field) {
    if (byte < 0x20 || byte > 0x7e || byte === 0x5c) return false;
    if (byte !== 0x20) significant = true;
  }
  return significant;
}

/** What an A-ASSOCIATE-RJ must answer, from the first 36 bytes of the RQ's variable field. */
export interface RqVerdict {
  reason: RefusalReason;
  result: number;
  source: number;
  rejectReason: number;
}

/**
 * Checks the protocol version and the AE titles of an A-ASSOCIATE-RQ (`fields`: the 36 bytes
 * after the PDU header). Only version 1 exists: bit 0 must be set (PS3.8 9.3.2) and kneegrade
 * also refuses bits of versions that do not exist (0xFFFF is not a DICOM UL peer).
 */
export function checkAssociateRqFields(fields: Uint8Array): RqVerdict | undefined {
  const version = (fields[0]! << 8) | fields[1]!;
  if (version !== 0x0001) {
    return {
      reason: "protocol-version",
      result: REJECT.permanent,
      source: REJECT.sourceServiceProviderAcse,
      rejectReason: REJECT.protocolVersionNotSupported,
    };
  }
  if (!isValidAeTitleField(fields.subarray(20, 36))) {
    return {
      reason: "bad-calling-ae",
      result: REJECT.permanent,
      source: REJECT.sourceServiceUser,
      rejectReason: REJECT.callingAeNotRecognized,
    };
  }
  if (!isValidAeTitleField(fields.subarray(4, 20))) {
    return {
      reason: "bad-called-ae",
      result: REJECT.permanent,
      source: REJECT.sourceServiceUser,
      rejectReason: REJECT.calledAeNotRecognized,
    };
  }
  return undefined;
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
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private headerFill = 0;
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
      const n = Math.min(HEADER_BYTES - this.headerFill, chunk.length - pos);
      chunk.copy(this.header, this.headerFill, pos, pos + n);
      this.headerFill += n;
      pos += n;
      if (this.headerFill < HEADER_BYTES) continue;
      this.headerFill = 0;
      if (!this.onHeader(this.header[0]!, this.header.readUInt32BE(2))) return;
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

/**
 * Re-frames the bytes the guard lets through into whole PDUs for dcmjs-dimse. Its own reader
 * concatenates every socket chunk onto the PDU received so far, copying each byte of a 256 KiB PDU
 * several times (the listener's largest CPU cost per instance); here a PDU that lies within one
 * chunk is handed on as a view of it, and one that spans chunks is copied once into a buffer of its
 * declared length. The guard forwards a PDU's bytes only after it has checked that PDU's header,
 * so that length is already within its limits when the buffer is allocated.
 */
export class PduAssembler {
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private headerFill = 0;
  private pdu: Buffer | undefined;
  private pduFill = 0;

  constructor(private readonly emit: (pdu: Buffer) => void) {}

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.pdu) {
        const n = Math.min(this.pdu.length - this.pduFill, chunk.length - pos);
        chunk.copy(this.pdu, this.pduFill, pos, pos + n);
        this.pduFill += n;
        pos += n;
        if (this.pduFill === this.pdu.length) this.complete();
        continue;
      }
      if (this.headerFill === 0 && chunk.length - pos >= HEADER_BYTES) {
        const total = HEADER_BYTES + chunk.readUInt32BE(pos + 2);
        if (chunk.length - pos >= total) {
          this.emit(chunk.subarray(pos, pos + total));
          pos += total;
        } else {
          this.pdu = Buffer.allocUnsafe(total);
          this.pduFill = 0;
        }
        continue;
      }
      // A header split between chunks.
      const n = Math.min(HEADER_BYTES - this.headerFill, chunk.length - pos);
      chunk.copy(this.header, this.headerFill, pos, pos + n);
      this.headerFill += n;
      pos += n;
      if (this.headerFill < HEADER_BYTES) continue;
      this.headerFill = 0;
      this.pdu = Buffer.allocUnsafe(HEADER_BYTES + this.header.readUInt32BE(2));
      this.header.copy(this.pdu, 0);
      this.pduFill = HEADER_BYTES;
      if (this.pduFill === this.pdu.length) this.complete();
    }
  }

  /** Drops a partly received PDU (the connection closed). */
  clear(): void {
    this.pdu = undefined;
    this.pduFill = 0;
    this.headerFill = 0;
  }

  private complete(): void {
    const pdu = this.pdu!;
    this.pdu = undefined;
    this.pduFill = 0;
    this.emit(pdu);
  }
}

/**
 * Puts a guard between `socket` and the `data` listeners that `attach` registers on it (dcmjs-dimse
 * reads the socket with `socket.on("data")` in its constructor: see its Network._wrapSocket), then
 * starts the association timer. Throws when `attach` registered no `data` listener (a dcmjs-dimse
 * that reads the socket another way would bypass the guard).
 */
export function guardConnection<T>(
  socket: Socket,
  options: GuardOptions,
  attach: () => T,
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
  const assembler = new PduAssembler((pdu) => {
    for (const reader of readers) reader.call(socket, pdu);
  });
  const guard = new ConnectionGuard(socket, options, (chunk) => assembler.push(chunk));
  socket.on("data", (chunk: Buffer) => guard.receive(chunk));
  socket.once("close", () => {
    guard.closed();
    assembler.clear();
  });
  guard.start();
  return { guard, attached };
}

/**
 * Open TCP connections, in total and per peer address. Holds one entry per address with an open
 * connection, so at most `maxTotal` entries.
 */
export class ConnectionLimiter {
  private total = 0;
  private readonly perPeer = new Map<string, number>();

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerPeer: number,
  ) {}

  /** Counts the connection in, or says why it may not be. */
  admit(peer: string): "too-many-connections" | "too-many-connections-from-peer" | undefined {
    if (this.total >= this.maxTotal) return "too-many-connections";
    const fromPeer = this.perPeer.get(peer) ?? 0;
    if (fromPeer >= this.maxPerPeer) return "too-many-connections-from-peer";
    this.total += 1;
    this.perPeer.set(peer, fromPeer + 1);
    return undefined;
  }

  release(peer: string): void {
    const fromPeer = this.perPeer.get(peer);
    if (fromPeer === undefined) return;
    this.total -= 1;
    if (fromPeer <= 1) this.perPeer.delete(peer);
    else this.perPeer.set(peer, fromPeer - 1);
  }

  get open(): number {
    return this.total;
  }
}

/** The peer's address as counted and logged (an IPv4-mapped IPv6 address as plain IPv4). */
export function peerAddress(socket: Socket): string {
  const address = socket.remoteAddress ?? "unknown";
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

/**
 * Refusals counted by reason; logging is throttled per reason (`perWindow` lines per `windowMs`),
 * the lines held back are reported as `suppressed` on the next line logged for that reason.
 */
export class RefusalCounter {
  readonly counts: Partial<Record<RefusalReason, number>> = {};
  private readonly windows = new Map<
    RefusalReason,
    { start: number; logged: number; suppressed: number }
  >();

  constructor(
    private readonly perWindow = 20,
    private readonly windowMs = 60_000,
  ) {}

  /** Counts one refusal; says whether to log it and how many earlier ones were not logged. */
  record(reason: RefusalReason, now = Date.now()): { log: boolean; suppressed: number } {
    this.counts[reason] = (this.counts[reason] ?? 0) + 1;
    let w = this.windows.get(reason);
    if (!w || now - w.start >= this.windowMs) {
      w = { start: now, logged: 0, suppressed: w?.suppressed ?? 0 };
      this.windows.set(reason, w);
    }
    if (w.logged >= this.perWindow) {
      w.suppressed += 1;
      return { log: false, suppressed: 0 };
    }
    w.logged += 1;
    const suppressed = w.suppressed;
    w.suppressed = 0;
    return { log: true, suppressed };
  }
}
