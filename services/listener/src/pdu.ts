/**
 * The DICOM upper layer's PDU framing as the network guard needs it (PS3.8 9.3): PDU types and the
 * reject and abort codes, the A-ABORT and A-ASSOCIATE-RJ PDUs, the checks of an A-ASSOCIATE-RQ's
 * fixed fields, and `PduAssembler`, which hands dcmjs-dimse whole PDUs.
 */
import type { RefusalReason } from "./connections.ts";

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

/** Every PDU starts with type (1), reserved (1) and length (uint32 BE, header excluded). */
export const HEADER_BYTES = 6;

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
    return rqVerdict(
      "protocol-version",
      REJECT.sourceServiceProviderAcse,
      REJECT.protocolVersionNotSupported,
    );
  }
  if (!isValidAeTitleField(fields.subarray(20, 36))) {
    return rqVerdict("bad-calling-ae", REJECT.sourceServiceUser, REJECT.callingAeNotRecognized);
  }
  if (!isValidAeTitleField(fields.subarray(4, 20))) {
    return rqVerdict("bad-called-ae", REJECT.sourceServiceUser, REJECT.calledAeNotRecognized);
  }
  return undefined;
}

/** Every refusal of an RQ's fixed fields is permanent: resending the same RQ cannot succeed. */
function rqVerdict(reason: RefusalReason, source: number, rejectReason: number): RqVerdict {
  return { reason, result: REJECT.permanent, source, rejectReason };
}

/** Collects a PDU header (type, reserved, length) that may arrive split between socket chunks. */
export class PduHeader {
  readonly bytes = Buffer.alloc(HEADER_BYTES);
  private fill = 0;

  /** Whether no byte of the next header has arrived yet. */
  get empty(): boolean {
    return this.fill === 0;
  }

  /** Copies what the header still lacks from `chunk` at `pos`; returns how many bytes it took. */
  take(chunk: Buffer, pos: number): number {
    const n = Math.min(HEADER_BYTES - this.fill, chunk.length - pos);
    chunk.copy(this.bytes, this.fill, pos, pos + n);
    this.fill += n;
    return n;
  }

  /** Whether the header is whole; when it is, the next `take` starts the next header. */
  complete(): boolean {
    if (this.fill < HEADER_BYTES) return false;
    this.fill = 0;
    return true;
  }

  /** The PDU type. */
  get type(): number {
    return this.bytes[0]!;
  }

  /** The PDU length, header excluded. */
  get length(): number {
    return this.bytes.readUInt32BE(2);
  }

  clear(): void {
    this.fill = 0;
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
  private readonly header = new PduHeader();
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
      if (this.header.empty && chunk.length - pos >= HEADER_BYTES) {
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
      pos += this.header.take(chunk, pos);
      if (!this.header.complete()) continue;
      this.pdu = Buffer.allocUnsafe(HEADER_BYTES + this.header.length);
      this.header.bytes.copy(this.pdu, 0);
      this.pduFill = HEADER_BYTES;
      if (this.pduFill === this.pdu.length) this.complete();
    }
  }

  /** Drops a partly received PDU (the connection closed). */
  clear(): void {
    this.pdu = undefined;
    this.pduFill = 0;
    this.header.clear();
  }

  private complete(): void {
    const pdu = this.pdu!;
    this.pdu = undefined;
    this.pduFill = 0;
    this.emit(pdu);
  }
}
