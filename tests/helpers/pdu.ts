/**
 * A hostile DICOM peer: upper-layer PDUs built by hand (PS3.8 9.3) and a raw `node:net` client
 * that records what the listener sends and when it closes, for tests of the network guard.
 */
import net from "node:net";

export const VERIFICATION = "1.2.840.10008.1.1";
export const IMPLICIT_VR_LE = "1.2.840.10008.1.2";
const APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1";

/** A PDU: type, reserved byte, uint32 BE length, body. */
export function pdu(type: number, body: Buffer): Buffer {
  const header = Buffer.alloc(6);
  header[0] = type;
  header.writeUInt32BE(body.length, 2);
  return Buffer.concat([header, body]);
}

/** Just a PDU header, declaring `length` (e.g. 4 GiB - 1) whatever follows. */
export function pduHeader(type: number, length: number): Buffer {
  const header = Buffer.alloc(6);
  header[0] = type;
  header.writeUInt32BE(length, 2);
  return header;
}

/** A variable item: type, reserved, uint16 BE length, value. */
function item(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head[0] = type;
  head.writeUInt16BE(value.length, 2);
  return Buffer.concat([head, value]);
}

/** An AE title field: 16 bytes, space-padded (or the raw bytes given). */
function aeField(ae: string | Buffer): Buffer {
  if (Buffer.isBuffer(ae)) return ae;
  return Buffer.from(ae.padEnd(16, " "), "ascii");
}

export interface AssociateRqOptions {
  calledAe?: string | Buffer;
  callingAe?: string | Buffer;
  protocolVersion?: number;
  /** Maximum length the requester receives (user information sub-item 0x51). */
  maxPduLength?: number;
}

/**
 * An A-ASSOCIATE-RQ: DICOM application context, one presentation context (Verification,
 * Implicit VR Little Endian), user information with the maximum length and an implementation
 * class UID.
 */
export function associateRq(opts: AssociateRqOptions = {}): Buffer {
  const fixed = Buffer.alloc(68);
  fixed.writeUInt16BE(opts.protocolVersion ?? 1, 0);
  aeField(opts.calledAe ?? "KNEEGRADE").copy(fixed, 4);
  aeField(opts.callingAe ?? "ATTACKER").copy(fixed, 20);
  const maxLength = Buffer.alloc(4);
  maxLength.writeUInt32BE(opts.maxPduLength ?? 16_384);
  const presentationContext = item(
    0x20,
    Buffer.concat([
      Buffer.from([1, 0, 0, 0]),
      item(0x30, Buffer.from(VERIFICATION)),
      item(0x40, Buffer.from(IMPLICIT_VR_LE)),
    ]),
  );
  const userInfo = item(
    0x50,
    Buffer.concat([item(0x51, maxLength), item(0x52, Buffer.from("1.2.826.0.1.3680043.9.9999"))]),
  );
  return pdu(
    0x01,
    Buffer.concat([
      fixed,
      item(0x10, Buffer.from(APPLICATION_CONTEXT)),
      presentationContext,
      userInfo,
    ]),
  );
}

/** A raw TCP peer that keeps what it receives (a few hundred bytes here) and when it closed. */
export class RawPeer {
  private chunks: Buffer[] = [];
  private waiters: (() => void)[] = [];
  closedAt: number | undefined;
  error: string | undefined;

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.wake();
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      this.error = error.code ?? error.message;
    });
    socket.on("close", () => {
      this.closedAt = performance.now();
      this.wake();
    });
  }

  static connect(port: number, localAddress?: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: "127.0.0.1", localAddress });
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new RawPeer(socket));
      });
      socket.once("error", reject);
    });
  }

  /** Connects, sends a valid A-ASSOCIATE-RQ and waits for the A-ASSOCIATE-AC. */
  static async associate(port: number, opts: AssociateRqOptions = {}): Promise<RawPeer> {
    const peer = await RawPeer.connect(port);
    peer.send(associateRq(opts));
    const answer = await peer.receive(6, 5000);
    if (answer[0] !== 0x02) throw new Error(`association not accepted: PDU type ${answer[0]}`);
    return peer;
  }

  get received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  get closed(): boolean {
    return this.closedAt !== undefined;
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /**
   * Writes `total` bytes (one reused 64 KiB buffer, respecting backpressure) until done or the
   * connection fails; returns the bytes handed to the socket.
   */
  async stream(total: number): Promise<number> {
    const block = Buffer.alloc(64 * 1024, 0x5a);
    let sent = 0;
    while (sent < total && !this.closed && !this.socket.destroyed) {
      const ok = this.socket.write(block);
      sent += block.length;
      if (!ok) {
        await new Promise<void>((resolve) => {
          const done = () => {
            this.socket.off("drain", done);
            this.socket.off("close", done);
            resolve();
          };
          this.socket.on("drain", done);
          this.socket.on("close", done);
        });
      }
    }
    return sent;
  }

  /** Resolves with at least `n` received bytes; rejects after `timeoutMs` or on close short. */
  async receive(n: number, timeoutMs: number): Promise<Buffer> {
    await this.until(() => this.received.length >= n || this.closed, timeoutMs);
    const got = this.received;
    if (got.length < n) throw new Error(`expected ${n} bytes, got ${got.length} before close`);
    return got;
  }

  /** When it closed (`performance.now()`), or undefined if still open after `timeoutMs`. */
  async waitClosed(timeoutMs: number): Promise<number | undefined> {
    await this.until(() => this.closed, timeoutMs).catch(() => {});
    return this.closedAt;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private until(condition: () => boolean, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (condition()) return resolve();
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      const check = () => {
        if (!condition()) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve();
      };
      this.waiters.push(check);
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}
