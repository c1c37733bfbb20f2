/**
 * Cross-site request forgery defence for the review pages, in two independent layers:
 *
 * 1. Every state-changing form carries a token derived, with a key only the server holds, from
 *    what the request is bound to: the session's id once logged in (a new session — and so a new
 *    token — at every login), else the login form's own nonce cookie. A token or cookie an
 *    attacker obtained for themselves (another port of the same host is the same site, so it can
 *    plant cookies) is worth nothing in the victim's session.
 * 2. The browser's own word on where the request comes from: `Sec-Fetch-Site` must be
 *    `same-origin` and `Origin`, when sent, must be this site's origin. Clients that send neither
 *    (curl, scripts) still need the token.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export type CsrfBinding = { session: string } | { login: string };

/** The server's CSRF key, derived from the session secret (so it survives restarts with it). */
export function csrfKey(secret: string): Buffer {
  return createHmac("sha256", secret).update("kneegrade review csrf v1").digest();
}

const bindingText = (b: CsrfBinding) =>
  "session" in b ? `session:${b.session}` : `login:${b.login}`;

export function csrfToken(key: Buffer, binding: CsrfBinding): string {
  return createHmac("sha256", key).update(bindingText(binding)).digest("base64url");
}

export function csrfTokenValid(key: Buffer, binding: CsrfBinding, token: unknown): boolean {
  if (typeof token !== "string" || token.length > 128) return false;
  const expected = Buffer.from(csrfToken(key, binding));
  const given = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * Whether the browser says the request comes from this site's own pages. `host` is the host
 * (and port) the client addressed; `https` whether it did so over TLS.
 */
export function sameOriginRequest(
  headers: Record<string, string | string[] | undefined>,
  host: string | undefined,
  https: boolean,
): { ok: true } | { ok: false; reason: string } {
  const site = one(headers["sec-fetch-site"]);
  if (site !== undefined && site !== "same-origin") {
    return { ok: false, reason: `Sec-Fetch-Site: ${site.slice(0, 32)}` };
  }
  const origin = one(headers.origin);
  if (origin === undefined) return { ok: true };
  // "null": a privacy-sensitive context (a no-referrer policy, a sandboxed frame, a redirect
  // chain). Only the browser's Sec-Fetch-Site, checked above, can then vouch for it.
  if (origin === "null") {
    return site === "same-origin" ? { ok: true } : { ok: false, reason: "Origin null" };
  }
  if (!host) return { ok: false, reason: "Origin without a Host" };
  let o: URL;
  try {
    o = new URL(origin);
  } catch {
    return { ok: false, reason: "unparseable Origin" };
  }
  const own = new URL(`${https ? "https" : "http"}://${host}`);
  return o.protocol === own.protocol && o.host === own.host
    ? { ok: true }
    : { ok: false, reason: "Origin of another site" };
}

const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
