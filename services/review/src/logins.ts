/**
 * Failed logins per account: a password guesser spread over many addresses (or hidden behind one
 * reverse proxy) still gets only so many tries at one account a minute. The per-address limit
 * is @fastify/rate-limit's on the login route; this one counts failures per user name, in memory,
 * bounded in size (an attacker inventing user names evicts the oldest entries, never grows it).
 */
export class FailedLogins {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly maxPerWindow: number,
    private readonly windowMs = 60_000,
    private readonly maxAccounts = 10_000,
  ) {}

  /** Whether this account has had its failures for the window (then no password is checked). */
  locked(username: string, now = Date.now()): boolean {
    return this.recent(username, now).length >= this.maxPerWindow;
  }

  fail(username: string, now = Date.now()): void {
    const list = this.recent(username, now);
    list.push(now);
    this.failures.delete(username);
    this.failures.set(username, list);
    if (this.failures.size > this.maxAccounts) {
      this.failures.delete(this.failures.keys().next().value!);
    }
  }

  succeed(username: string): void {
    this.failures.delete(username);
  }

  private recent(username: string, now: number): number[] {
    const list = (this.failures.get(username) ?? []).filter((t) => now - t < this.windowMs);
    if (list.length === 0) this.failures.delete(username);
    else this.failures.set(username, list);
    return list;
  }
}
