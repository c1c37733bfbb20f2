/**
 * What the listener counts per connection: open connections in total and per peer address, and
 * the guard's refusals by reason (with throttled logging). Nothing here reads peer data.
 */
import type { Socket } from "node:net";

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

export interface RefusalDetails {
  pduType?: number;
  declaredLength?: number;
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
