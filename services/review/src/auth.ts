/**
 * Who is asking, and whether the form is this site's own: sessions in PostgreSQL (a cookie holding
 * a random token, only its hash stored), the login and logout pages, failed-login limits per
 * address and per account, and CSRF defence bound to the session or the login form (csrf.ts) on
 * every state-changing request. Registered with fastify-plugin, so its hooks and decorators apply
 * to the whole app; the page modules' routes sit behind `requireSession`.
 */
import { createHash, randomBytes } from "node:crypto";
import { checkPassword } from "@kneegrade/review-data";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fastifyPlugin from "fastify-plugin";
import { z } from "zod";
import { audit, type ReviewDeps } from "./context.ts";
import { type CsrfBinding, csrfKey, csrfToken, csrfTokenValid, sameOriginRequest } from "./csrf.ts";
import { errorPage } from "./error-page.ts";
import { html, page } from "./html.ts";
import { FailedLogins } from "./logins.ts";

export const SESSION_COOKIE = "kneegrade_session";
/** The login form's nonce, which its CSRF token is bound to before there is a session. */
export const LOGIN_COOKIE = "kneegrade_login";
/**
 * Cookie names: under TLS with the `__Host-` prefix, which browsers accept only from this very
 * origin (Secure, Path=/, no Domain), so a sibling subdomain or plain-HTTP port cannot set them.
 */
export const cookieNames = (tls: boolean) =>
  tls
    ? { session: `__Host-${SESSION_COOKIE}`, login: `__Host-${LOGIN_COOKIE}` }
    : { session: SESSION_COOKIE, login: LOGIN_COOKIE };

const tokenHash = (token: string) => createHash("sha256").update(token).digest("hex");
const NO_STORE = "no-store";
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
const LOCAL_BASE = "http://review.invalid";

/**
 * A path on this site to go to after login, else "/": it must resolve, against any base, to that
 * same base (no scheme, no `//host`, no backslash or control characters — browsers drop tabs and
 * newlines, so "/\t/host" would become "//host").
 */
export function localPath(next: unknown): string {
  if (typeof next !== "string" || next.length > 2048 || !next.startsWith("/")) return "/";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f\\]/.test(next)) return "/";
  try {
    const u = new URL(next, LOCAL_BASE);
    return u.origin === LOCAL_BASE ? `${u.pathname}${u.search}${u.hash}` : "/";
  } catch {
    return "/";
  }
}

/** Everything else needs a session: a page asked for goes to the login page and back. */
export async function requireSession(request: FastifyRequest, reply: FastifyReply) {
  if (request.user) return;
  if (request.method === "GET") {
    return reply.redirect(`/login?next=${encodeURIComponent(request.url)}`, 303);
  }
  return reply
    .status(401)
    .type("text/html")
    .send(page("Log in", html`<p>Log in first: <a href="/login">log in</a>.</p>`));
}

interface Cookies {
  names: ReturnType<typeof cookieNames>;
  secure: boolean;
}

/**
 * The request's CSRF binding: its session, else the login form's nonce from its cookie — or, with
 * a reply to set it on, a new nonce.
 */
function csrfBinding(cookies: Cookies) {
  const loginNonce = (request: FastifyRequest, reply?: FastifyReply): string | null => {
    if (request.loginNonce) return request.loginNonce;
    const cookie = request.cookies[cookies.names.login];
    if (cookie && /^[A-Za-z0-9_-]{32}$/.test(cookie)) {
      request.loginNonce = cookie;
      return cookie;
    }
    if (!reply) return null;
    request.loginNonce = randomBytes(24).toString("base64url");
    reply.setCookie(cookies.names.login, request.loginNonce, {
      path: "/",
      httpOnly: true,
      sameSite: "strict",
      secure: cookies.secure,
    });
    return request.loginNonce;
  };
  return (request: FastifyRequest, reply?: FastifyReply): CsrfBinding | null => {
    if (request.sessionId) return { session: request.sessionId };
    const nonce = loginNonce(request, reply);
    return nonce ? { login: nonce } : null;
  };
}

/** The session of the request's cookie, when it is current and its user enabled. */
function sessionHook({ db }: ReviewDeps, cookies: Cookies) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    reply.header("cache-control", NO_STORE);
    const token = request.cookies[cookies.names.session];
    if (!token) return;
    const session = await db.session.findUnique({
      where: { tokenHash: tokenHash(token) },
      include: { user: true },
    });
    if (!session || session.expiresAt <= new Date() || session.user.disabled) return;
    request.sessionId = session.id;
    const { id, username, displayName, organisation, role } = session.user;
    request.user = { id, username, displayName, organisation, role };
  };
}

/**
 * Every state-changing request, whatever its route: the browser must say it comes from this
 * site, and the form's token must be the one bound to this session (or login form).
 */
function csrfHook({ db, log }: ReviewDeps, key: Buffer, binding: ReturnType<typeof csrfBinding>) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (SAFE_METHODS.has(request.method)) return;
    const origin = sameOriginRequest(request.headers, request.host, request.protocol === "https");
    const bound = binding(request);
    const body = request.body as Record<string, unknown> | undefined;
    const token = body && typeof body === "object" ? body._csrf : undefined;
    const reason = !origin.ok
      ? origin.reason
      : !bound
        ? "no session or login form"
        : csrfTokenValid(key, bound, token)
          ? null
          : token === undefined
            ? "no token"
            : "a token of another session";
    if (reason === null) return;
    log.warn(
      { event: "review.csrf-refused", url: request.routeOptions.url, reason, address: request.ip },
      "request refused: not from this site's own form",
    );
    await audit(db, "review.csrf-refused", request, {
      details: { url: request.routeOptions.url ?? null, reason },
    });
    return reply
      .status(403)
      .type("text/html")
      .send(
        errorPage(
          403,
          "The form's security token is missing or out of date: go back, reload the page and try again.",
        ),
      );
  };
}

const loginPage = (
  reply: FastifyReply,
  next: string,
  o: { error?: string; notice?: string; username?: string } = {},
) =>
  page(
    "Log in",
    html`<h1>Log in</h1>
${o.notice ? html`<p class="notice" role="status" id="login-notice">${o.notice}</p>` : ""}
${o.error ? html`<p class="error" role="alert">${o.error}</p>` : ""}
<form method="post" action="/login" class="login">
  <input type="hidden" name="_csrf" value="${reply.csrfToken()}">
  <input type="hidden" name="next" value="${next}">
  <label>User name <input name="username" autocomplete="username" required ${o.username ? "" : "autofocus"} value="${o.username ?? ""}"></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required ${o.username ? "autofocus" : ""}></label>
  <button type="submit">Log in</button>
</form>
<p class="hint">Patient data: every study you open is recorded.</p>`,
  );

const Login = z.object({
  username: z.string().max(64),
  password: z.string().max(1024),
  next: z.string().max(2048).optional(),
  _csrf: z.string().optional(),
});

/** A new session for `user`, replacing any this browser had; its cookie is set on the reply. */
async function openSession(
  { db, config }: ReviewDeps,
  cookies: Cookies,
  request: FastifyRequest,
  reply: FastifyReply,
  user: { id: string; username: string },
) {
  const token = randomBytes(32).toString("base64url");
  const expiresAt = new Date(Date.now() + config.REVIEW_SESSION_HOURS * 3_600_000);
  await db.session.create({
    data: { tokenHash: tokenHash(token), userId: user.id, expiresAt, address: request.ip },
  });
  // A session already open in this browser ends: one browser, one session (and CSRF token).
  if (request.sessionId) await db.session.deleteMany({ where: { id: request.sessionId } });
  await db.session.deleteMany({ where: { expiresAt: { lt: new Date() } } });
  await audit(db, "review.login", request, { actor: user.username });
  reply
    .clearCookie(cookies.names.login, { path: "/", secure: cookies.secure })
    .setCookie(cookies.names.session, token, {
      path: "/",
      httpOnly: true,
      sameSite: "strict",
      secure: cookies.secure,
      expires: expiresAt,
    });
}

/** The login and logout routes. */
async function loginRoutes(app: FastifyInstance, deps: ReviewDeps, cookies: Cookies) {
  const { db, config, log } = deps;
  app.get("/login", async (request, reply) => {
    const query = request.query as { next?: string; out?: string };
    const next = localPath(query.next);
    const notice = query.out === "1" ? "You are logged out." : undefined;
    return reply.type("text/html").send(loginPage(reply, next, { notice }));
  });
  const failedLogins = new FailedLogins(config.REVIEW_LOGIN_ATTEMPTS_PER_MINUTE);
  app.post(
    "/login",
    {
      // Per address (behind a trusted proxy: the client's); per account below.
      config: { rateLimit: { max: config.REVIEW_LOGIN_ATTEMPTS_PER_MINUTE, timeWindow: 60_000 } },
    },
    async (request, reply) => {
      const form = Login.safeParse(request.body);
      const next = localPath(form.success ? form.data.next : undefined);
      const username = form.success ? form.data.username.trim().toLowerCase() : "";
      if (username && failedLogins.locked(username)) {
        await audit(db, "review.login-locked", request, { details: { username } });
        log.warn(
          { event: "review.login-locked", address: request.ip },
          "login refused: account limit",
        );
        const error = "Too many failed logins for this account: wait a minute and try again.";
        return reply
          .status(429)
          .type("text/html")
          .send(loginPage(reply, next, { error, username }));
      }
      const user = form.success ? await checkPassword(db, username, form.data.password) : null;
      if (username) {
        if (user) failedLogins.succeed(username);
        else failedLogins.fail(username);
      }
      if (!user) {
        const given = form.success ? form.data.username.slice(0, 64) : null;
        await audit(db, "review.login-failed", request, { details: { username: given } });
        log.warn({ event: "review.login-failed", address: request.ip }, "failed login");
        const error = "Wrong user name or password (or the account is disabled).";
        return reply
          .status(401)
          .type("text/html")
          .send(loginPage(reply, next, { error, username: given ?? "" }));
      }
      await openSession(deps, cookies, request, reply, user);
      return reply.redirect(next, 303);
    },
  );
  // Logging out needs the session it ends.
  await app.register(async (session) => {
    session.addHook("onRequest", requireSession);
    session.post("/logout", async (request, reply) => {
      if (request.sessionId) await db.session.delete({ where: { id: request.sessionId } });
      await audit(db, "review.logout", request);
      return reply
        .clearCookie(cookies.names.session, { path: "/", secure: cookies.secure })
        .redirect("/login?out=1", 303);
    });
  });
}

/**
 * Sessions, CSRF and the login pages for the whole app. Needs @fastify/cookie (with the session
 * secret), a form body parser and @fastify/rate-limit registered first.
 */
export const authPlugin = fastifyPlugin(
  async (app: FastifyInstance, deps: ReviewDeps & { secret: string }) => {
    const cookies: Cookies = {
      names: cookieNames(Boolean(deps.https)),
      secure: Boolean(deps.https),
    };
    const key = csrfKey(deps.secret);
    const binding = csrfBinding(cookies);
    app.decorateRequest("user", null);
    app.decorateRequest("sessionId", null);
    app.decorateRequest("loginNonce", null);
    app.decorateReply("csrfToken", function (this: FastifyReply) {
      return csrfToken(key, binding(this.request, this)!);
    });
    app.addHook("onRequest", sessionHook(deps, cookies));
    app.addHook("preHandler", csrfHook(deps, key, binding));
    await loginRoutes(app, deps, cookies);
  },
  { name: "kneegrade-review-auth", fastify: "5.x" },
);
