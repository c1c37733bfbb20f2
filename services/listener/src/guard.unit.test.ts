import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ConnectionLimiter, RefusalCounter, type RefusalReason } from "./connections.ts";
import { ConnectionGuard, type GuardLimits } from "./guard.ts";
import {
  checkAssociateRqFields,
  isDataOnlyPDataTf,
  isValidAeTitleField,
  PduAssembler,
} from "./pdu.ts";

const LIMITS: GuardLimits = {
  maxAssociateRqBytes: 65_536,
  maxPduBytes: 266_240,
  associationTimeoutMs: 1000,
  idleTimeoutMs: 1000,
};

/** Enough of a net.Socket for the guard: what it writes, ends and destroys. */
class FakeSocket extends EventEmitter {
  written: Buffer[] = [];
  ended: Buffer | undefined;
  destroyed = false;
  writable = true;
  bytesWritten = 0;
  write(data: Buffer, cb?: () => void) {
    this.written.push(data);
    this.bytesWritten += data.length;
    cb?.();
    return true;
  }
  end(data: Buffer) {
    this.ended = data;
    this.writable = false;
  }
  destroy() {
    this.destroyed = true;
  }
}

function setup(limits: GuardLimits = LIMITS) {
  const socket = new FakeSocket();
  const forwarded: Buffer[] = [];
  const refusals: RefusalReason[] = [];
  const guard = new ConnectionGuard(
    socket as unknown as Socket,
    { limits, onRefuse: (reason) => refusals.push(reason) },
    (chunk) => forwarded.push(Buffer.from(chunk)),
  );
  guard.start();
  return { socket, guard, forwarded: () => Buffer.concat(forwarded), refusals };
}

function pdu(type: number, body: Buffer | number): Buffer {
  const b = typeof body === "number" ? Buffer.alloc(body, 0xab) : body;
  const header = Buffer.alloc(6);
  header[0] = type;
  header.writeUInt32BE(b.length, 2);
  return Buffer.concat([header, b]);
}

/** The 68 fixed bytes of an A-ASSOCIATE-RQ plus `extra` bytes of items. */
function associateRq(opts: { version?: number; called?: Buffer; calling?: Buffer } = {}) {
  const fixed = Buffer.alloc(68 + 40, 0);
  fixed.writeUInt16BE(opts.version ?? 1, 0);
  (opts.called ?? Buffer.from("KNEEGRADE       ")).copy(fixed, 4);
  (opts.calling ?? Buffer.from("MODALITY        ")).copy(fixed, 20);
  return pdu(0x01, fixed);
}

/** Feeds `bytes` in chunks of the given sizes (cycled). */
function feed(guard: ConnectionGuard, bytes: Buffer, sizes: number[]) {
  let pos = 0;
  for (let i = 0; pos < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    guard.receive(bytes.subarray(pos, pos + n));
    pos += n;
  }
}

afterEach(() => {
  vi.useRealTimers();
});

describe("ConnectionGuard framing", () => {
  it("forwards a valid association and its PDUs unchanged, however the bytes are chunked", () => {
    for (const sizes of [[1], [5, 7], [41, 1, 3], [42], [4096], [6, 3, 100_000]]) {
      const { guard, forwarded, refusals, socket } = setup();
      const rq = associateRq();
      feed(guard, rq, sizes);
      expect(forwarded()).toEqual(rq);
      guard.associationAccepted();
      const after = Buffer.concat([pdu(0x04, 5000), pdu(0x04, 0), pdu(0x04, 12), pdu(0x05, 4)]);
      feed(guard, after, sizes);
      expect(forwarded()).toEqual(Buffer.concat([rq, after]));
      expect(refusals).toEqual([]);
      expect(socket.destroyed).toBe(false);
      guard.closed();
    }
  });

  it("lets a PDU of LISTENER_MAX_PDU_BYTES through and refuses one byte more", () => {
    const { guard, forwarded, refusals } = setup();
    guard.receive(associateRq());
    guard.associationAccepted();
    const largest = pdu(0x04, LIMITS.maxPduBytes);
    guard.receive(largest);
    expect(refusals).toEqual([]);
    guard.receive(pdu(0x04, LIMITS.maxPduBytes + 1));
    expect(refusals).toEqual(["pdu-too-long"]);
    expect(forwarded().length).toBe(associateRq().length + largest.length);
  });

  it("holds back the first bytes until the RQ's AE titles are read, and forwards none of a bad one", () => {
    const { guard, forwarded, socket, refusals } = setup();
    const rq = associateRq({ calling: Buffer.alloc(16, 0xff) });
    feed(guard, rq, [20]);
    expect(forwarded().length).toBe(0);
    expect(refusals).toEqual(["bad-calling-ae"]);
    // A-ASSOCIATE-RJ: permanent, service user, calling AE not recognized.
    expect([...socket.ended!]).toEqual([0x03, 0, 0, 0, 0, 4, 0, 1, 1, 3]);
  });

  it("aborts a 4 GiB PDU at its header without keeping what follows", () => {
    const { guard, forwarded, socket, refusals } = setup();
    const rq = associateRq();
    guard.receive(rq);
    guard.associationAccepted();
    const header = Buffer.from([0x04, 0, 0xff, 0xff, 0xff, 0xff]);
    guard.receive(Buffer.concat([header.subarray(0, 3)]));
    guard.receive(Buffer.concat([header.subarray(3), Buffer.alloc(1000)]));
    for (let i = 0; i < 100; i++) guard.receive(Buffer.alloc(65_536));
    // Only the three header bytes of the first chunk went on (dcmjs-dimse keeps < 6 bytes).
    expect(forwarded().length).toBe(rq.length + 3);
    expect(refusals).toEqual(["pdu-too-long"]);
    expect([...socket.written[0]!]).toEqual([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 6]);
    expect(socket.destroyed).toBe(true);
  });

  it("refuses unknown PDU types, PDUs out of order and oversized A-ASSOCIATE-RQs", () => {
    const cases: [Buffer, RefusalReason, number][] = [
      [pdu(0x09, 4), "unknown-pdu-type", 1],
      [pdu(0x00, 4), "unknown-pdu-type", 1],
      [pdu(0x04, 10), "unexpected-pdu", 2],
      [pdu(0x01, 65_537), "associate-rq-too-long", 6],
      [pdu(0x01, 20), "malformed-associate-rq", 6],
      [Buffer.concat([associateRq(), pdu(0x04, 10)]), "unexpected-pdu", 2],
    ];
    for (const [bytes, reason, abortReason] of cases) {
      const { guard, socket, refusals } = setup();
      guard.receive(bytes);
      expect(refusals).toEqual([reason]);
      expect(socket.written[0]![9]).toBe(abortReason);
      expect(socket.destroyed).toBe(true);
    }
  });
});

describe("ConnectionGuard timers", () => {
  it("closes a connection whose association is not accepted in time", () => {
    vi.useFakeTimers();
    const { guard, socket, refusals } = setup();
    guard.receive(associateRq().subarray(0, 50));
    vi.advanceTimersByTime(999);
    expect(socket.destroyed).toBe(false);
    vi.advanceTimersByTime(1);
    expect(socket.destroyed).toBe(true);
    expect(refusals).toEqual(["association-timeout"]);
  });

  it("aborts an association silent for the idle timeout, not one that keeps talking", () => {
    vi.useFakeTimers();
    const { guard, socket, refusals } = setup();
    guard.receive(associateRq());
    guard.associationAccepted();
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(600);
      guard.receive(pdu(0x04, 10));
    }
    expect(socket.destroyed).toBe(false);
    vi.advanceTimersByTime(1000);
    expect(refusals).toEqual(["idle-timeout"]);
    expect([...socket.written[0]!]).toEqual([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 0]);
    expect(socket.destroyed).toBe(true);
  });
});

describe("ConnectionGuard idle timer and responses", () => {
  it("counts bytes sent (a slow C-STORE response) as activity", () => {
    vi.useFakeTimers();
    const { guard, socket, refusals } = setup();
    guard.receive(associateRq());
    guard.associationAccepted();
    socket.write(Buffer.alloc(200)); // the A-ASSOCIATE-AC
    vi.advanceTimersByTime(900);
    socket.write(Buffer.alloc(100)); // a response, the peer silent meanwhile
    vi.advanceTimersByTime(900);
    expect(socket.destroyed).toBe(false);
    vi.advanceTimersByTime(1500);
    expect(refusals).toEqual(["idle-timeout"]);
  });
});

describe("association request fields", () => {
  it("accepts protocol version 1 only, and printable AE titles", () => {
    // Protocol version (uint16 BE), 2 reserved bytes, called and calling AE (16 bytes each).
    const fields = (version: number, called: Buffer, calling: Buffer) =>
      Buffer.concat([Buffer.from([version >> 8, version & 0xff, 0, 0]), called, calling]);
    const ok = Buffer.from("KNEEGRADE       ");
    expect(checkAssociateRqFields(fields(1, ok, ok))).toBeUndefined();
    expect(checkAssociateRqFields(fields(0xffff, ok, ok))).toMatchObject({
      reason: "protocol-version",
      result: 1,
      source: 2,
      rejectReason: 2,
    });
    expect(checkAssociateRqFields(fields(0, ok, ok))?.reason).toBe("protocol-version");
    expect(checkAssociateRqFields(fields(1, Buffer.alloc(16), ok))).toMatchObject({
      reason: "bad-called-ae",
      rejectReason: 7,
    });
    expect(isValidAeTitleField(Buffer.from("                "))).toBe(false);
    expect(isValidAeTitleField(Buffer.from("A\\B             "))).toBe(false);
    expect(isValidAeTitleField(Buffer.from(" CR_ROOM-2 @x~  "))).toBe(true);
  });
});

describe("ConnectionLimiter and RefusalCounter", () => {
  it("caps connections in total and per peer, and gives slots back", () => {
    const limiter = new ConnectionLimiter(3, 2);
    expect(limiter.admit("a")).toBeUndefined();
    expect(limiter.admit("a")).toBeUndefined();
    expect(limiter.admit("a")).toBe("too-many-connections-from-peer");
    expect(limiter.admit("b")).toBeUndefined();
    expect(limiter.admit("c")).toBe("too-many-connections");
    limiter.release("a");
    expect(limiter.admit("c")).toBeUndefined();
    expect(limiter.open).toBe(3);
  });

  it("counts every refusal and throttles the lines logged", () => {
    const counter = new RefusalCounter(2, 1000);
    const logged = [0, 1, 2, 3].map((i) => counter.record("idle-timeout", i).log);
    expect(logged).toEqual([true, true, false, false]);
    expect(counter.record("idle-timeout", 1001)).toEqual({ log: true, suppressed: 2 });
    expect(counter.counts["idle-timeout"]).toBe(5);
  });
});

describe("PduAssembler", () => {
  const pdu = (type: number, body: number[]) => {
    const b = Buffer.alloc(6 + body.length);
    b[0] = type;
    b.writeUInt32BE(body.length, 2);
    Buffer.from(body).copy(b, 6);
    return b;
  };
  const collect = () => {
    const out: Buffer[] = [];
    return { out, assembler: new PduAssembler((p) => out.push(Buffer.from(p))) };
  };

  it("hands on PDUs that lie within one chunk as they are, several per chunk", () => {
    const { out, assembler } = collect();
    const a = pdu(4, [1, 2, 3]);
    const b = pdu(5, []);
    const c = pdu(4, [9]);
    assembler.push(Buffer.concat([a, b, c]));
    expect(out).toEqual([a, b, c]);
  });

  it("joins a PDU split anywhere, header included, into one buffer", () => {
    const a = pdu(
      4,
      Array.from({ length: 100 }, (_, i) => i),
    );
    const b = pdu(7, [0, 0, 2, 0]);
    const stream = Buffer.concat([a, b]);
    for (const cuts of [[1], [3, 6], [5, 7, 50], [6, 105, 108], [105, 106, 107]]) {
      const { out, assembler } = collect();
      let from = 0;
      for (const cut of [...cuts, stream.length]) {
        assembler.push(stream.subarray(from, cut));
        from = cut;
      }
      expect(out).toEqual([a, b]);
    }
  });

  it("lends only what the reader keeps nothing of; everything else is a copy of its own", () => {
    const a = pdu(
      4,
      Array.from({ length: 40 }, (_, i) => i),
    );
    const b = pdu(
      4,
      Array.from({ length: 40 }, (_, i) => 100 + i),
    );
    const stream = Buffer.concat([a, b]);
    for (const lend of [false, true]) {
      // Chunks are views of one reused receive buffer, overwritten after each push.
      const reused = Buffer.alloc(stream.length);
      const views: Buffer[] = [];
      const seen: Buffer[] = [];
      const assembler = new PduAssembler(
        (p) => {
          views.push(p);
          seen.push(Buffer.from(p));
        },
        () => lend,
      );
      for (const [from, to] of [
        [0, 30],
        [30, 50],
        [50, stream.length],
      ] as const) {
        stream.copy(reused, 0, from, to);
        assembler.push(reused.subarray(0, to - from));
        reused.fill(0xee);
      }
      expect(seen).toEqual([a, b]);
      // Copies still hold their bytes; lent PDUs were views of reused memory, valid during the
      // call only (the first one now shows other bytes).
      expect(views.every((v, i) => v.equals(seen[i]!))).toBe(!lend);
    }
  });

  it("drops a partly received PDU when cleared", () => {
    const { out, assembler } = collect();
    assembler.push(pdu(4, [1, 2, 3, 4]).subarray(0, 8));
    assembler.clear();
    const b = pdu(5, [0, 0, 0, 0]);
    assembler.push(b);
    expect(out).toEqual([b]);
  });
});

describe("isDataOnlyPDataTf", () => {
  /** A P-DATA-TF of PDVs, each [message control header, value length]. */
  const pDataTf = (pdvs: [number, number][]) => {
    const items = pdvs.map(([control, n]) => {
      const item = Buffer.alloc(6 + n, 0x55);
      item.writeUInt32BE(2 + n, 0);
      item[4] = 1;
      item[5] = control;
      return item;
    });
    const body = Buffer.concat(items);
    const header = Buffer.from([4, 0, 0, 0, 0, 0]);
    header.writeUInt32BE(body.length, 2);
    return Buffer.concat([header, body]);
  };

  it("is true for data set fragments, the last one last", () => {
    expect(isDataOnlyPDataTf(pDataTf([[0, 100]]))).toBe(true);
    expect(
      isDataOnlyPDataTf(
        pDataTf([
          [0, 100],
          [2, 5],
        ]),
      ),
    ).toBe(true);
  });

  it("is false for commands, data after the last fragment, bad lengths and other PDUs", () => {
    expect(isDataOnlyPDataTf(pDataTf([[3, 50]]))).toBe(false);
    expect(
      isDataOnlyPDataTf(
        pDataTf([
          [0, 10],
          [1, 10],
        ]),
      ),
    ).toBe(false);
    expect(
      isDataOnlyPDataTf(
        pDataTf([
          [2, 10],
          [0, 10],
        ]),
      ),
    ).toBe(false);
    const bad = pDataTf([[0, 100]]);
    bad.writeUInt32BE(500, 6);
    expect(isDataOnlyPDataTf(bad)).toBe(false);
    expect(isDataOnlyPDataTf(pDataTf([[0, 100]]).subarray(0, 9))).toBe(false);
    expect(isDataOnlyPDataTf(Buffer.from([5, 0, 0, 0, 0, 4, 0, 0, 0, 0]))).toBe(false);
  });
});
