/**
 * The listener against a hostile network peer (raw `node:net` sockets, PDUs built by hand) and,
 * after every attack, DCMTK as the legitimate modality. Before the network guard a PDU header
 * declaring 4 GiB made the listener buffer whatever followed, half a PDU held a connection open
 * for minutes, idle associations locked modalities out for a minute, TCP connections were not
 * capped and garbage A-ASSOCIATE-RQs were accepted. Timeouts are shortened for the test; bounds
 * on timing are generous (a loaded CI machine), but each one fails without the guard.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { selfSignedCert } from "../helpers/certs.ts";
import { echoscu, storescu, tool } from "../helpers/dcmtk.ts";
import { type Harness, startHarness, waitFor } from "../helpers/env.ts";
import { WG04_DIR } from "../helpers/paths.ts";
import { associateRq, pdu, pduHeader, RawPeer } from "../helpers/pdu.ts";

const MiB = 1024 * 1024;
const FOUR_GIB = 0xffff_ffff;
/** Set GUARD_TEST_FIGURES=1 to print the measured memory growth and closing times. */
const figures = (line: string) => {
  if (process.env.GUARD_TEST_FIGURES) console.info(`[guard] ${line}`);
};

async function expectEchoWorks(h: Harness) {
  const r = await echoscu(h.target);
  expect(r.code, r.stderr).toBe(0);
}

/** Peak growth of this process's memory (the listener runs in it) while `during` runs. */
async function memoryGrowth<T>(during: () => Promise<T>) {
  const base = process.memoryUsage();
  let rss = base.rss;
  let arrayBuffers = base.arrayBuffers;
  const sample = () => {
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss);
    arrayBuffers = Math.max(arrayBuffers, m.arrayBuffers);
  };
  const timer = setInterval(sample, 5);
  try {
    const result = await during();
    sample();
    return { result, rss: rss - base.rss, arrayBuffers: arrayBuffers - base.arrayBuffers };
  } finally {
    clearInterval(timer);
  }
}

/** The bytes after the A-ASSOCIATE-AC at the start of `received`. */
/** `n` raw connections to the listener of `h`, from `address`. */
const connections = (h: Harness, n: number, address?: string) =>
  Promise.all(Array.from({ length: n }, () => RawPeer.connect(h.listener.port, address)));

/** Waits until at least `count` of `peers` are closed. */
const closedAtLeast = (peers: RawPeer[], count: number, ms: number, what: string) =>
  waitFor(
    async () => (peers.filter((p) => p.closed).length >= count ? true : undefined),
    ms,
    what,
    20,
  );

function afterAssociateAc(received: Buffer): Buffer {
  expect(received[0]).toBe(0x02);
  return received.subarray(6 + received.readUInt32BE(2));
}

const abort = (reason: number) => [0x07, 0, 0, 0, 0, 4, 0, 0, 2, reason];
const reject = (result: number, source: number, reason: number) => [
  0x03,
  0,
  0,
  0,
  0,
  4,
  0,
  result,
  source,
  reason,
];

/**
 * Short timeouts; the largest PDU is exactly what kneegrade announces, so peers that respect it
 * get through.
 */
const GUARD_SETTINGS = {
  LISTENER_ASSOCIATION_TIMEOUT_SECONDS: "2",
  LISTENER_IDLE_TIMEOUT_SECONDS: "3",
  LISTENER_MAX_PDU_BYTES: "262144",
  MAX_ASSOCIATIONS: "2",
};

/** Caps far below a flood of 200 connections. */
const CAP_SETTINGS = {
  LISTENER_MAX_CONNECTIONS: "6",
  LISTENER_MAX_CONNECTIONS_PER_PEER: "4",
  MAX_ASSOCIATIONS: "2",
};

describe("network guard: framing, timeouts and association checks", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness(GUARD_SETTINGS);
    return () => h.stop();
  });

  /**
   * A header declaring 4 GiB of `pduType`, then 50 MiB streamed after it: the listener closes the
   * connection at once, stops reading (the 50 MiB cannot be delivered) and keeps nothing.
   */
  async function expectFourGibRefused(peer: RawPeer, pduType: number, what: string) {
    const t0 = performance.now();
    const growth = await memoryGrowth(async () => {
      peer.send(pduHeader(pduType, FOUR_GIB));
      const sent = await peer.stream(50 * MiB);
      return { sent, closedAt: await peer.waitClosed(5000) };
    });
    const closedMs = growth.result.closedAt! - t0;
    figures(
      `4 GiB ${what}: closed after ${closedMs.toFixed(0)} ms, attacker wrote ` +
        `${(growth.result.sent / MiB).toFixed(1)} MiB; growth rss ${(growth.rss / MiB).toFixed(1)} ` +
        `MiB, arrayBuffers ${(growth.arrayBuffers / MiB).toFixed(1)} MiB`,
    );
    expect(growth.result.closedAt).toBeDefined();
    expect(closedMs).toBeLessThan(2000);
    expect(growth.result.sent).toBeLessThan(50 * MiB);
    expect(growth.arrayBuffers).toBeLessThan(4 * MiB);
    expect(growth.rss).toBeLessThan(24 * MiB);
  }

  it("closes at once a connection whose first PDU header declares 4 GiB, keeping nothing", async () => {
    await expectFourGibRefused(await RawPeer.connect(h.listener.port), 0x01, "A-ASSOCIATE-RQ");
    expect(h.listener.refusals()["associate-rq-too-long"]).toBe(1);
    await expectEchoWorks(h);
  });

  it("aborts an association whose P-DATA header declares 4 GiB, keeping nothing", async () => {
    await expectFourGibRefused(await RawPeer.associate(h.listener.port), 0x04, "P-DATA-TF");
    expect(h.listener.refusals()["pdu-too-long"]).toBe(1);
    await expectEchoWorks(h);
  });

  it("answers an A-ABORT to a PDU one byte over LISTENER_MAX_PDU_BYTES; full-size PDUs still pass", async () => {
    const peer = await RawPeer.associate(h.listener.port);
    peer.send(pduHeader(0x04, h.config.LISTENER_MAX_PDU_BYTES + 1));
    await peer.receive(1, 2000);
    expect(await peer.waitClosed(2000)).toBeDefined();
    // A-ABORT, service provider, invalid PDU parameter value.
    expect([...afterAssociateAc(peer.received)]).toEqual(abort(6));
    // storescu sends a 6 MB radiograph in PDUs of the 256 KiB kneegrade announces: they pass.
    const stored = await storescu(h.target, [join(WG04_DIR, "RG3_UNC.dcm")]);
    expect(stored.code, stored.stderr).toBe(0);
  });

  it("closes a connection that sends half a PDU and then nothing, after the association timeout", async () => {
    const before = h.listener.refusals()["association-timeout"] ?? 0;
    const halfHeader = await RawPeer.connect(h.listener.port);
    const halfRq = await RawPeer.connect(h.listener.port);
    const t0 = performance.now();
    halfHeader.send(Buffer.from([0x01, 0x00, 0x00]));
    halfRq.send(associateRq().subarray(0, 60));
    const closed = await Promise.all([halfHeader.waitClosed(10_000), halfRq.waitClosed(10_000)]);
    for (const at of closed) {
      expect(at).toBeDefined();
      const ms = at! - t0;
      figures(`half a PDU: closed after ${ms.toFixed(0)} ms (timeout 2000 ms)`);
      expect(ms).toBeGreaterThan(1500);
      expect(ms).toBeLessThan(6000);
    }
    expect(halfHeader.received.length).toBe(0);
    expect(halfRq.received.length).toBe(0);
    expect(h.listener.refusals()["association-timeout"]).toBe(before + 2);
    await expectEchoWorks(h);
  });

  it("aborts idle associations after the idle timeout, which gives MAX_ASSOCIATIONS slots back", async () => {
    const idle = await Promise.all([
      RawPeer.associate(h.listener.port),
      RawPeer.associate(h.listener.port),
    ]);
    const t0 = performance.now();
    // Both slots are held: a modality is turned away (MAX_ASSOCIATIONS).
    const refused = await echoscu(h.target);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/Local Limit Exceeded/i);
    const closed = await Promise.all(idle.map((p) => p.waitClosed(10_000)));
    for (const [i, at] of closed.entries()) {
      expect(at).toBeDefined();
      const ms = at! - t0;
      figures(`idle association: aborted after ${ms.toFixed(0)} ms (timeout 3000 ms)`);
      expect(ms).toBeGreaterThan(2500);
      expect(ms).toBeLessThan(5500);
      // A-ABORT, service provider, reason not specified.
      expect([...afterAssociateAc(idle[i]!.received)]).toEqual(abort(0));
    }
    expect(h.listener.refusals()["idle-timeout"]).toBe(2);
    await expectEchoWorks(h);
  });

  it("rejects an A-ASSOCIATE-RQ with protocol version 0xFFFF or 0 (ACSE, version not supported)", async () => {
    for (const protocolVersion of [0xffff, 0x0000, 0xfffe]) {
      const peer = await RawPeer.connect(h.listener.port);
      peer.send(associateRq({ protocolVersion }));
      expect(await peer.waitClosed(3000)).toBeDefined();
      expect([...peer.received]).toEqual(reject(1, 2, 2));
    }
    await expectEchoWorks(h);
  });

  it("rejects AE titles that are not printable ASCII (service user, AE not recognized)", async () => {
    const cases = [
      { opts: { calledAe: Buffer.alloc(16, 0x00) }, reason: 7 },
      { opts: { calledAe: Buffer.alloc(16, 0xff) }, reason: 7 },
      { opts: { calledAe: Buffer.alloc(16, 0x20) }, reason: 7 },
      { opts: { callingAe: Buffer.alloc(16, 0x00) }, reason: 3 },
      { opts: { callingAe: Buffer.alloc(16, 0xff) }, reason: 3 },
      { opts: { callingAe: "BAD\\AE" }, reason: 3 },
    ];
    for (const { opts, reason } of cases) {
      const peer = await RawPeer.connect(h.listener.port);
      peer.send(associateRq(opts));
      expect(await peer.waitClosed(3000)).toBeDefined();
      expect([...peer.received]).toEqual(reject(1, 1, reason));
    }
    // The same request with printable titles is accepted (the hand-built RQ is valid).
    const control = await RawPeer.associate(h.listener.port);
    control.destroy();
    await expectEchoWorks(h);
  });

  it("closes the connection on an unknown PDU type, or a PDU out of place", async () => {
    const cases = [
      { send: pdu(0x09, Buffer.alloc(4)), reason: 1 },
      { send: pdu(0xff, Buffer.alloc(4)), reason: 1 },
      { send: pdu(0x04, Buffer.alloc(12)), reason: 2 },
    ];
    for (const { send, reason } of cases) {
      const peer = await RawPeer.connect(h.listener.port);
      const t0 = performance.now();
      peer.send(send);
      const at = await peer.waitClosed(3000);
      expect(at).toBeDefined();
      expect(at! - t0).toBeLessThan(2000);
      expect([...peer.received]).toEqual(abort(reason));
    }
    // After the association too.
    const peer = await RawPeer.associate(h.listener.port);
    peer.send(pdu(0x08, Buffer.alloc(4)));
    expect(await peer.waitClosed(3000)).toBeDefined();
    expect([...afterAssociateAc(peer.received)]).toEqual(abort(1));
    expect(h.listener.refusals()["unknown-pdu-type"]).toBe(3);
    await expectEchoWorks(h);
  });
});

describe("network guard: connection caps", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness(CAP_SETTINGS);
    return () => h.stop();
  });

  it("closes connections beyond the per-peer and total caps at once, and recovers", async () => {
    const flood = await connections(h, 200);
    const t0 = performance.now();
    await closedAtLeast(flood, 196, 5000, "the connections over the per-peer cap to be closed");
    figures(`flood of 200: 196 closed within ${(performance.now() - t0).toFixed(0)} ms`);
    await new Promise((r) => setTimeout(r, 300));
    expect(flood.filter((p) => !p.closed)).toHaveLength(4);
    // echoscu comes from the same address: turned away while the flood holds its 4 slots.
    expect((await echoscu(h.target)).code).not.toBe(0);

    // From another address: 2 more fit under the total cap of 6.
    const second = await connections(h, 5, "127.0.0.2");
    await closedAtLeast(second, 3, 5000, "the connections over the total cap to be closed");
    await new Promise((r) => setTimeout(r, 300));
    expect(second.filter((p) => !p.closed)).toHaveLength(2);
    const counts = h.listener.refusals();
    expect(counts["too-many-connections-from-peer"]).toBeGreaterThanOrEqual(197);
    expect(counts["too-many-connections"]).toBe(3);

    for (const p of [...flood, ...second]) p.destroy();
    await waitFor(
      async () => ((await echoscu(h.target)).code === 0 ? true : undefined),
      10_000,
      "echoscu to get through once the flood is gone",
    );
    await expectEchoWorks(h);
  });
});

describe("network guard over TLS", () => {
  let h: Harness;
  let cert: string;

  beforeAll(async () => {
    const made = selfSignedCert(mkdtempSync(join(tmpdir(), "kneegrade-guard-tls-")), "guard");
    const key = made.key;
    cert = made.cert;
    h = await startHarness({
      LISTENER_TLS_KEY: key,
      LISTENER_TLS_CERT: cert,
      LISTENER_ASSOCIATION_TIMEOUT_SECONDS: "1.5",
      LISTENER_MAX_CONNECTIONS: "3",
      LISTENER_MAX_CONNECTIONS_PER_PEER: "3",
      MAX_ASSOCIATIONS: "2",
    });
  });
  afterAll(async () => {
    await h?.stop();
  });

  const echoTls = () =>
    tool("echoscu", ["+tla", "+cf", cert, "-aec", "KNEEGRADE", "127.0.0.1", String(h.target.port)]);

  it("caps connections before the handshake, times out a silent handshake and half a PDU", async () => {
    const silent = await connections(h, 5);
    const t0 = performance.now();
    await closedAtLeast(silent, 2, 3000, "the connections over the cap to be closed");
    expect(performance.now() - t0).toBeLessThan(1000);
    // The three that never say hello are closed after the association timeout.
    const closed = await Promise.all(silent.map((p) => p.waitClosed(8000)));
    for (const at of closed) expect(at! - t0).toBeLessThan(5000);
    expect(Math.max(...closed.map((at) => at! - t0))).toBeGreaterThan(1000);
    expect(h.listener.refusals()).toMatchObject({
      "too-many-connections": 2,
      "association-timeout": 3,
    });

    // Handshake done, then half a PDU header: the guard reads the decrypted bytes.
    const secure = tls.connect({
      port: h.listener.port,
      host: "127.0.0.1",
      ca: readFileSync(cert),
    });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", resolve);
      secure.once("error", reject);
    });
    const t1 = performance.now();
    secure.write(Buffer.from([0x01, 0x00]));
    const closedAt = await new Promise<number>((resolve) => {
      secure.on("error", () => {});
      secure.once("close", () => resolve(performance.now()));
    });
    expect(closedAt - t1).toBeGreaterThan(1000);
    expect(closedAt - t1).toBeLessThan(5000);

    const echo = await echoTls();
    expect(echo.code, echo.stderr).toBe(0);
  });
});
