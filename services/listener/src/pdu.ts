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
 * Whether every PDV of a P-DATA-TF PDU carries data set bytes (none is a command fragment) and
 * only the PDU's last PDV may be a data set's last fragment: such a PDU is one that dcmjs-dimse
 * writes straight into a C-STORE's store stream and keeps nothing of. False for any other PDU and
 * for a PDV list that does not add up to the PDU's length.
 */
export function isDataOnlyPDataTf(pdu: Buffer): boolean {
  if (pdu.length < HEADER_BYTES || pdu[0] !== PDU_TYPE.dataTf) return false;
  let pos = HEADER_BYTES;
  while (pos < pdu.length) {
    if (pdu.length - pos < 6) return false;
    const itemLength = pdu.readUInt32BE(pos);
    const end = pos + 4 + itemLength;
    if (itemLength < 2 || end > pdu.length) return false;
    const control = pdu[pos + 5]!;
    if (control & 0x01) return false; // a command fragment
    if (control & 0x02 && end !== pdu.length) return false; // data after the last fragment
    pos = end;
  }
  return true;
}

/**
 * The values of a P-DATA-TF's PDVs (views of `pdu`) when every one is a data set fragment and
 * none is a data set's last: a PDU in the middle of a data set, which asks nothing of the DIMSE
 * layer but to keep its bytes. Undefined for any other PDU.
 */
export function middleDataFragments(pdu: Buffer): Buffer[] | undefined {
  if (!isDataOnlyPDataTf(pdu)) return undefined;
  const values: Buffer[] = [];
  let pos = HEADER_BYTES;
  while (pos < pdu.length) {
    const end = pos + 4 + pdu.readUInt32BE(pos);
    if (pdu[pos + 5]! & 0x02) return undefined;
    values.push(pdu.subarray(pos + 6, end));
    pos = end;
  }
  return values;
}

/**
 * Re-frames the bytes the guard lets through into whole PDUs for dcmjs-dimse. Its own reader
 * concatenates every socket chunk onto the PDU received so far, copying each byte of a PDU
 * several times; here a PDU goes on as a view of the bytes it arrived in, or of one reused buffer
 * when it spans socket chunks, whenever `lendable` says that its reader keeps nothing of it once
 * the call returns (a C-STORE's data: the spool writer copies what it keeps). Any other PDU goes on
 * as a copy of its own. The socket's chunks are views of one reused receive buffer (server.ts), so
 * received bytes create no new memory on the way to the spool. The guard forwards a PDU's bytes
 * only after it has checked that PDU's header, so its length is already within the guard's
 * limits when the reused buffer grows to it.
 */
export class PduAssembler {
  private readonly header = new PduHeader();
  /** Holds a PDU that spans chunks; grown to the longest such PDU, then reused. */
  private spill = Buffer.alloc(0);
  /** The length (header included) of the PDU being collected in `spill`; 0 when none is. */
  private pduLength = 0;
  private pduFill = 0;

  constructor(
    private readonly emit: (pdu: Buffer) => void,
    private readonly lendable: (pdu: Buffer) => boolean = () => false,
  ) {}

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.pduLength > 0) {
        const n = Math.min(this.pduLength - this.pduFill, chunk.length - pos);
        chunk.copy(this.spill, this.pduFill, pos, pos + n);
        this.pduFill += n;
        pos += n;
        if (this.pduFill === this.pduLength) this.complete();
        continue;
      }
      if (this.header.empty && chunk.length - pos >= HEADER_BYTES) {
        const total = HEADER_BYTES + chunk.readUInt32BE(pos + 2);
        if (chunk.length - pos >= total) {
          this.hand(chunk.subarray(pos, pos + total));
          pos += total;
        } else {
          this.begin(total);
        }
        continue;
      }
      // A header split between chunks.
      pos += this.header.take(chunk, pos);
      if (!this.header.complete()) continue;
      this.begin(HEADER_BYTES + this.header.length);
      this.header.bytes.copy(this.spill, 0);
      this.pduFill = HEADER_BYTES;
      if (this.pduFill === this.pduLength) this.complete();
    }
  }

  /** Drops a partly received PDU (the connection closed). */
  clear(): void {
    this.pduLength = 0;
    this.pduFill = 0;
    this.header.clear();
  }

  private begin(total: number): void {
    if (this.spill.length < total) this.spill = Buffer.allocUnsafe(total);
    this.pduLength = total;
    this.pduFill = 0;
  }

  private complete(): void {
    const pdu = this.spill.subarray(0, this.pduLength);
    this.pduLength = 0;
    this.pduFill = 0;
    this.hand(pdu);
  }

  /** Emits a view of `pdu` when its reader keeps nothing of it, a copy otherwise. */
  private hand(pdu: Buffer): void {
    this.emit(this.lendable(pdu) ? pdu : Buffer.from(pdu));
  }
}
