/**
 * A hand-made Storage SCU that sends data set bytes exactly as given (PS3.8 PDUs, PS3.7 C-STORE):
 * the attacker and the broken modality of the hardening tests. DCMTK and dcmjs-dimse re-encode or
 * refuse what they send (a compressed data set under a native syntax, say); this does neither.
 */
import net from "node:net";

export const IMPLICIT_LE = "1.2.840.10008.1.2";
export const EXPLICIT_LE = "1.2.840.10008.1.2.1";
const APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1";
const IMPLEMENTATION_CLASS = "1.2.826.0.1.3680043.9.7433.1.1";

const pad = (s: string, n: number) => Buffer.from(s.padEnd(n, " ").slice(0, n), "latin1");
const uidBytes = (uid: string) => {
  const b = Buffer.from(uid, "latin1");
  return b.length % 2 ? Buffer.concat([b, Buffer.from([0])]) : b;
};

function pdu(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(6);
  h[0] = type;
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function item(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h[0] = type;
  h.writeUInt16BE(body.length, 2);
  return Buffer.concat([h, body]);
}

export interface AssociateRequestOptions {
  calledAet: string;
  callingAet: string;
  contexts: { id: number; abstractSyntax: string; transferSyntaxes: string[] }[];
  protocolVersion?: number;
  /** Raw 16-byte AE title fields, to send bytes no AE title may contain. */
  rawCalled?: Buffer;
  rawCalling?: Buffer;
  maxPduLength?: number;
}

/** A-ASSOCIATE-RQ (PS3.8 9.3.2). */
export function associateRequest(o: AssociateRequestOptions): Buffer {
  const fixed = Buffer.alloc(68);
  fixed.writeUInt16BE(o.protocolVersion ?? 1, 0);
  (o.rawCalled ?? pad(o.calledAet, 16)).copy(fixed, 4);
  (o.rawCalling ?? pad(o.callingAet, 16)).copy(fixed, 20);
  const items = [item(0x10, Buffer.from(APPLICATION_CONTEXT, "latin1"))];
  for (const c of o.contexts) {
    const head = Buffer.from([c.id, 0, 0, 0]);
    const subs = [
      item(0x30, Buffer.from(c.abstractSyntax, "latin1")),
      ...c.transferSyntaxes.map((ts) => item(0x40, Buffer.from(ts, "latin1"))),
    ];
    items.push(item(0x20, Buffer.concat([head, ...subs])));
  }
  const max = Buffer.alloc(4);
  max.writeUInt32BE(o.maxPduLength ?? 16384, 0);
  items.push(
    item(0x50, Buffer.concat([item(0x51, max), item(0x52, Buffer.from(IMPLEMENTATION_CLASS))])),
  );
  return pdu(0x01, Buffer.concat([fixed, ...items]));
}

/** Implicit VR little endian element. */
function el(group: number, element: number, value: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(element, 2);
  h.writeUInt32LE(value.length, 4);
  return Buffer.concat([h, value]);
}
const us = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n, 0);
  return b;
};

/** C-STORE-RQ command set (PS3.7 9.3.1.1), implicit VR little endian as every command. */
export function cStoreCommand(sopClassUid: string, sopInstanceUid: string, messageId: number) {
  const body = Buffer.concat([
    el(0x0000, 0x0002, uidBytes(sopClassUid)),
    el(0x0000, 0x0100, us(0x0001)),
    el(0x0000, 0x0110, us(messageId)),
    el(0x0000, 0x0700, us(0)),
    el(0x0000, 0x0800, us(0x0000)),
    el(0x0000, 0x1000, uidBytes(sopInstanceUid)),
  ]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length, 0);
  return Buffer.concat([el(0x0000, 0x0000, len), body]);
}

/** P-DATA-TF PDUs carrying `data` in PDVs of at most `maxPdv` bytes. */
function pData(contextId: number, command: boolean, data: Buffer, maxPdv: number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < data.length || off === 0; off += maxPdv) {
    const part = data.subarray(off, off + maxPdv);
    const last = off + maxPdv >= data.length;
    const pdv = Buffer.alloc(6);
    pdv.writeUInt32BE(part.length + 2, 0);
    pdv[4] = contextId;
    pdv[5] = (command ? 1 : 0) | (last ? 2 : 0);
    out.push(pdu(0x04, Buffer.concat([pdv, part])));
    if (data.length === 0) break;
  }
  return out;
}

/** Reads whole PDUs from a socket. */
export class PduReader {
  private buf = Buffer.alloc(0);
  private waiters: ((p: { type: number; body: Buffer } | null) => void)[] = [];
  private closed = false;

  constructor(private readonly socket: net.Socket) {
    socket.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.drain();
    });
    const end = () => {
      this.closed = true;
      this.drain();
    };
    socket.on("close", end);
    socket.on("error", end);
  }

  private drain() {
    while (this.waiters.length) {
      if (this.buf.length >= 6 && this.buf.length >= 6 + this.buf.readUInt32BE(2)) {
        const len = this.buf.readUInt32BE(2);
        const p = { type: this.buf[0]!, body: this.buf.subarray(6, 6 + len) };
        this.buf = this.buf.subarray(6 + len);
        this.waiters.shift()!(p);
      } else if (this.closed) {
        this.waiters.shift()!(null);
      } else {
        return;
      }
    }
  }

  /** The next PDU, or null when the peer closed the connection first. */
  next(timeoutMs = 10_000): Promise<{ type: number; body: Buffer } | null> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no PDU within timeout")), timeoutMs);
      this.waiters.push((p) => {
        clearTimeout(timer);
        resolve(p);
      });
      this.drain();
    });
  }
}

export function connect(port: number, host = "127.0.0.1"): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host, () => resolve(s));
    s.once("error", reject);
  });
}

/** (0000,0900) Status of a response command set (implicit VR little endian). */
function statusOf(command: Buffer): number | undefined {
  let off = 0;
  while (off + 8 <= command.length) {
    const group = command.readUInt16LE(off);
    const element = command.readUInt16LE(off + 2);
    const len = command.readUInt32LE(off + 4);
    if (group === 0 && element === 0x0900) return command.readUInt16LE(off + 8);
    off += 8 + len;
  }
  return undefined;
}

export interface RawStoreResult {
  /** Status per object (null: no response, the association ended first). */
  statuses: (number | null)[];
  /** Whether the association was accepted at all (with the presentation context). */
  accepted: boolean;
}

/**
 * Associates with one presentation context (`transferSyntax`), sends each object's data set
 * bytes as given under it, and collects the C-STORE statuses; then releases.
 */
export async function rawStore(opts: {
  port: number;
  calledAet: string;
  callingAet?: string;
  sopClassUid: string;
  transferSyntax: string;
  objects: { sopInstanceUid: string; dataset: Buffer; commandSopClassUid?: string }[];
  timeoutMs?: number;
}): Promise<RawStoreResult> {
  const socket = await connect(opts.port);
  const reader = new PduReader(socket);
  const timeout = opts.timeoutMs ?? 30_000;
  try {
    socket.write(
      associateRequest({
        calledAet: opts.calledAet,
        callingAet: opts.callingAet ?? "RAWSCU",
        contexts: [
          { id: 1, abstractSyntax: opts.sopClassUid, transferSyntaxes: [opts.transferSyntax] },
        ],
      }),
    );
    const ac = await reader.next(timeout);
    // Presentation context result: item 0x21 after the 68 fixed bytes and the application context.
    if (!ac || ac.type !== 0x02) return { accepted: false, statuses: opts.objects.map(() => null) };
    const pcResult = ac.body.indexOf(Buffer.from([0x21, 0x00]), 68);
    if (pcResult < 0 || ac.body[pcResult + 6] !== 0) {
      return { accepted: false, statuses: opts.objects.map(() => null) };
    }
    const statuses: (number | null)[] = [];
    let messageId = 1;
    for (const o of opts.objects) {
      const cmd = cStoreCommand(
        o.commandSopClassUid ?? opts.sopClassUid,
        o.sopInstanceUid,
        messageId++,
      );
      for (const p of pData(1, true, cmd, 16_000)) socket.write(p);
      for (const p of pData(1, false, o.dataset, 16_000)) socket.write(p);
      const rsp = await reader.next(timeout);
      if (!rsp || rsp.type !== 0x04) {
        statuses.push(null);
        break;
      }
      statuses.push(statusOf(rsp.body.subarray(6)) ?? null);
    }
    while (statuses.length < opts.objects.length) statuses.push(null);
    if (!socket.destroyed) {
      socket.write(pdu(0x05, Buffer.alloc(4)));
      await reader.next(5_000).catch(() => null);
    }
    return { accepted: true, statuses };
  } finally {
    socket.destroy();
  }
}

/** The data set of a Part 10 file (everything after the File Meta Information group). */
export function datasetOf(file: Buffer): Buffer {
  const groupLength = file.readUInt32LE(132 + 8);
  return file.subarray(132 + 12 + groupLength);
}
