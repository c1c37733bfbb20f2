/**
 * The review pages as a Fastify app: a plugin per concern (cookies, form bodies, security
 * headers, login rate limit, static files), CSRF defence bound to the session (csrf.ts), sessions
 * in PostgreSQL, and the routes. Nothing but the login page, the static files and /healthz answers
 * without a session. docs/SECURITY.md has the threat model.
 */
import { createHash, randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import fastifyCookie from "@fastify/cookie";
import fastifyFormbody from "@fastify/formbody";
import fastifyHelmet from "@fastify/helmet";
import fastifyRateLimit from "@fastify/rate-limit";
import fastifyStatic from "@fastify/static";
import type { Config } from "@kneegrade/config";
import type { Db } from "@kneegrade/db";
import type { Logger } from "@kneegrade/log";
import {
  addUser,
  agreementReport,
  checkPassword,
  disableUser,
  NewUser,
} from "@kneegrade/review-data";
import Fastify, { type FastifyReply, type FastifyRequest } from "fastify";
import { z } from "zod";
import { usersPage } from "./admin.ts";
import { agreementPage, confusionPng } from "./agreement.ts";
import { type CsrfBinding, csrfKey, csrfToken, csrfTokenValid, sameOriginRequest } from "./csrf.ts";
import { dicomDate, html, page, personName } from "./html.ts";
import { heatmapPng, kneeRegionPng, radiographJpeg } from "./images.ts";
import { FailedLogins } from "./logins.ts";
import { type ReportQueue, SignError, signStudy } from "./sign.ts";
import {
  loadImageSizes,
  loadPriors,
  loadStudy,
  loadUngradedImages,
  previewText,
  studyPage,
} from "./study.ts";
import { WorklistQuery, worklist, worklistPage } from "./worklist.ts";

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

export type ReviewConfig = Pick<
  Config,
  | "REVIEW_SESSION_SECRET"
  | "REVIEW_SESSION_HOURS"
  | "REVIEW_LOGIN_ATTEMPTS_PER_MINUTE"
  | "REVIEW_AGREEMENT_ALERT"
  | "REVIEW_AGREEMENT_DAYS"
  | "REVIEW_AGREEMENT_MIN_KNEES"
  | "REVIEW_TRUSTED_PROXIES"
> &
  Partial<Pick<Config, "REVIEW_VIEWER_URL">>;

export interface ReviewDeps {
  db: Db;
  config: ReviewConfig;
  log: Logger;
  reportQueue: ReportQueue;
  /** HTTPS: cookies are marked Secure, HSTS and upgrade-insecure-requests are sent. */
  https?: { key: string; cert: string };
}

interface SessionUser {
  id: string;
  username: string;
  displayName: string;
  organisation: string;
  role: "RADIOLOGIST" | "VIEWER" | "ADMIN";
}

declare module "fastify" {
  interface FastifyRequest {
    user: SessionUser | null;
    sessionId: string | null;
    loginNonce: string | null;
  }
  interface FastifyReply {
    /** The CSRF token for forms on this page: bound to the session, or to the login nonce. */
    csrfToken(): string;
  }
}

const tokenHash = (token: string) => createHash("sha256").update(token).digest("hex");
const PUBLIC_DIR = fileURLToPath(new URL("../public/", import.meta.url));
const NO_STORE = "no-store";
/**
 * The pictures (never the pages): kept by this browser only, and asked for again on every use, so
 * a session that ended gets no picture; an unchanged one is answered 304 without rendering it.
 */
const PRIVATE_REVALIDATE = "private, no-cache";
/** Changes every picture's ETag when the way pictures are drawn changes. */
const PICTURES_VERSION = "2";

/**
 * Marks a picture cacheable under an ETag made from what determines its bytes; true (and a 304
 * sent) when the browser already has it.
 */
function cachedPicture(
  request: FastifyRequest,
  reply: FastifyReply,
  ...parts: (string | Uint8Array)[]
): boolean {
  const hash = createHash("sha256").update(PICTURES_VERSION);
  for (const part of parts) hash.update("\0").update(part);
  const etag = `"${hash.digest("base64url").slice(0, 32)}"`;
  reply.header("cache-control", PRIVATE_REVALIDATE).header("etag", etag);
  const match = request.headers["if-none-match"];
  if (match?.split(",").some((t) => t.trim().replace(/^W\//, "") === etag)) {
    reply.status(304).send();
    return true;
  }
  return false;
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** The sign form as the study page submits it: named text fields, each once, of bounded size. */
const SignForm = z
  .record(z.string().max(100), z.string().max(20_000))
  .refine((f) => Object.keys(f).length <= 200, "too many fields");
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

export async function buildReviewApp(deps: ReviewDeps) {
  const { db, config, log } = deps;
  const secure = Boolean(deps.https);
  const names = cookieNames(secure);
  const app = Fastify({
    logger: false,
    ...(deps.https ? { https: deps.https } : {}),
    bodyLimit: 256 * 1024,
    // Behind the reverse proxies named here, the client's address (audit, login limits) and the
    // origin it addressed come from X-Forwarded-For/-Proto/-Host; from anyone else they are ignored.
    ...(config.REVIEW_TRUSTED_PROXIES.length > 0
      ? { trustProxy: config.REVIEW_TRUSTED_PROXIES }
      : {}),
  });
  const secret = config.REVIEW_SESSION_SECRET ?? randomBytes(32).toString("hex");
  const csrf = csrfKey(secret);
  const audit = (
    event: string,
    request: FastifyRequest,
    o: { actor?: string; studyInstanceUid?: string; details?: Record<string, unknown> } = {},
  ) =>
    db.auditEvent.create({
      data: {
        event,
        actor: o.actor ?? request.user?.username ?? "anonymous",
        address: request.ip,
        ...(o.studyInstanceUid ? { studyInstanceUid: o.studyInstanceUid } : {}),
        ...(o.details ? { details: o.details as object } : {}),
      },
    });

  await app.register(fastifyCookie, { secret });
  await app.register(fastifyFormbody);
  await app.register(fastifyHelmet, {
    contentSecurityPolicy: {
      directives: {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "upgrade-insecure-requests": secure ? [] : null,
      },
    },
    hsts: secure,
    // Not helmet's "no-referrer": with it browsers send `Origin: null` on the pages' own form
    // posts, and the origin check (csrf.ts) wants the real one; nothing leaves the site either way.
    referrerPolicy: { policy: "same-origin" },
  });
  await app.register(fastifyRateLimit, { global: false });
  await app.register(fastifyStatic, { root: PUBLIC_DIR, prefix: "/static/" });

  app.decorateRequest("user", null);
  app.decorateRequest("sessionId", null);
  app.decorateRequest("loginNonce", null);
  /** The login form's nonce from its cookie, or a new one (set on this reply). */
  const loginNonce = (request: FastifyRequest, reply?: FastifyReply): string | null => {
    if (request.loginNonce) return request.loginNonce;
    const cookie = request.cookies[names.login];
    if (cookie && /^[A-Za-z0-9_-]{32}$/.test(cookie)) {
      request.loginNonce = cookie;
      return cookie;
    }
    if (!reply) return null;
    request.loginNonce = randomBytes(24).toString("base64url");
    reply.setCookie(names.login, request.loginNonce, {
      path: "/",
      httpOnly: true,
      sameSite: "strict",
      secure,
    });
    return request.loginNonce;
  };
  const binding = (request: FastifyRequest, reply?: FastifyReply): CsrfBinding | null => {
    if (request.sessionId) return { session: request.sessionId };
    const nonce = loginNonce(request, reply);
    return nonce ? { login: nonce } : null;
  };
  app.decorateReply("csrfToken", function (this: FastifyReply) {
    return csrfToken(csrf, binding(this.request, this)!);
  });
  app.addHook("onRequest", async (request, reply) => {
    reply.header("cache-control", NO_STORE);
    const token = request.cookies[names.session];
    if (!token) return;
    const session = await db.session.findUnique({
      where: { tokenHash: tokenHash(token) },
      include: { user: true },
    });
    if (!session || session.expiresAt <= new Date() || session.user.disabled) return;
    request.sessionId = session.id;
    const { id, username, displayName, organisation, role } = session.user;
    request.user = { id, username, displayName, organisation, role };
  });
  // Every state-changing request, whatever its route: the browser must say it comes from this
  // site, and the form's token must be the one bound to this session (or login form).
  app.addHook("preHandler", async (request, reply) => {
    if (SAFE_METHODS.has(request.method)) return;
    const origin = sameOriginRequest(request.headers, request.host, request.protocol === "https");
    const bound = binding(request);
    const body = request.body as Record<string, unknown> | undefined;
    const token = body && typeof body === "object" ? body._csrf : undefined;
    const reason = !origin.ok
      ? origin.reason
      : !bound
        ? "no session or login form"
        : csrfTokenValid(csrf, bound, token)
          ? null
          : token === undefined
            ? "no token"
            : "a token of another session";
    if (reason === null) return;
    log.warn(
      { event: "review.csrf-refused", url: request.routeOptions.url, reason, address: request.ip },
      "request refused: not from this site's own form",
    );
    await audit("review.csrf-refused", request, {
      details: { url: request.routeOptions.url ?? null, reason },
    });
    return reply
      .status(403)
      .type("text/html")
      .send(
        page(
          "Error 403",
          html`<h1>Error 403</h1><p class="error">The form's security token is missing or out of date: go back, reload the page and try again.</p><p><a href="/">Worklist</a></p>`,
        ),
      );
  });
  app.setErrorHandler(
    async (error: Error & { statusCode?: number; code?: string }, request, reply) => {
      const status = error.statusCode ?? 500;
      if (status >= 500) {
        log.error(
          // Prisma's messages embed the call and its arguments: its last line says what failed.
          {
            event: "review.error",
            url: request.routeOptions.url,
            err: error.message.trim().split("\n").pop(),
          },
          "review page failed",
        );
      }
      const message =
        status === 429
          ? "Too many login attempts from your address: wait a minute."
          : status >= 500
            ? "Something went wrong; the error was logged."
            : error.message;
      return reply
        .status(status)
        .type("text/html")
        .send(
          page(
            `Error ${status}`,
            html`<h1>Error ${status}</h1><p class="error">${message}</p><p><a href="/">Worklist</a></p>`,
          ),
        );
    },
  );

  app.get("/healthz", async () => ({ ok: true }));
  // Browsers ask for /favicon.ico whatever the page links: the same icon as the pages' link.
  app.get("/favicon.ico", async (_request, reply) =>
    reply.header("cache-control", "public, max-age=86400").sendFile("favicon.svg"),
  );

  // --- login ---------------------------------------------------------------------------------
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
  app.get("/login", async (request, reply) => {
    const query = request.query as { next?: string; out?: string };
    const next = localPath(query.next);
    const notice = query.out === "1" ? "You are logged out." : undefined;
    return reply.type("text/html").send(loginPage(reply, next, { notice }));
  });
  const Login = z.object({
    username: z.string().max(64),
    password: z.string().max(1024),
    next: z.string().max(2048).optional(),
    _csrf: z.string().optional(),
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
        await audit("review.login-locked", request, { details: { username } });
        log.warn(
          { event: "review.login-locked", address: request.ip },
          "login refused: account limit",
        );
        return reply
          .status(429)
          .type("text/html")
          .send(
            loginPage(reply, next, {
              error: "Too many failed logins for this account: wait a minute and try again.",
              username,
            }),
          );
      }
      const user = form.success ? await checkPassword(db, username, form.data.password) : null;
      if (username) {
        if (user) failedLogins.succeed(username);
        else failedLogins.fail(username);
      }
      if (!user) {
        await audit("review.login-failed", request, {
          details: { username: form.success ? form.data.username.slice(0, 64) : null },
        });
        log.warn({ event: "review.login-failed", address: request.ip }, "failed login");
        return reply
          .status(401)
          .type("text/html")
          .send(
            loginPage(reply, next, {
              error: "Wrong user name or password (or the account is disabled).",
              username: form.success ? form.data.username.slice(0, 64) : "",
            }),
          );
      }
      const token = randomBytes(32).toString("base64url");
      const expiresAt = new Date(Date.now() + config.REVIEW_SESSION_HOURS * 3_600_000);
      await db.session.create({
        data: { tokenHash: tokenHash(token), userId: user.id, expiresAt, address: request.ip },
      });
      // A session already open in this browser ends: one browser, one session (and CSRF token).
      if (request.sessionId) await db.session.deleteMany({ where: { id: request.sessionId } });
      await db.session.deleteMany({ where: { expiresAt: { lt: new Date() } } });
      await audit("review.login", request, { actor: user.username });
      return reply
        .clearCookie(names.login, { path: "/", secure })
        .setCookie(names.session, token, {
          path: "/",
          httpOnly: true,
          sameSite: "strict",
          secure,
          expires: expiresAt,
        })
        .redirect(next, 303);
    },
  );

  // --- everything else needs a session ------------------------------------------------------
  await app.register(async (pages) => {
    pages.addHook("onRequest", async (request, reply) => {
      if (request.user) return;
      if (request.method === "GET") {
        return reply.redirect(`/login?next=${encodeURIComponent(request.url)}`, 303);
      }
      return reply
        .status(401)
        .type("text/html")
        .send(page("Log in", html`<p>Log in first: <a href="/login">log in</a>.</p>`));
    });
    const user = (request: FastifyRequest) => request.user!;
    const forbidden = (request: FastifyRequest, reply: FastifyReply, what: string) =>
      reply
        .status(403)
        .type("text/html")
        .send(
          page("Forbidden", html`<h1>Error 403</h1><p class="error">${what}</p>`, {
            user: user(request),
            csrf: reply.csrfToken(),
          }),
        );

    pages.post("/logout", async (request, reply) => {
      if (request.sessionId) await db.session.delete({ where: { id: request.sessionId } });
      await audit("review.logout", request);
      return reply.clearCookie(names.session, { path: "/", secure }).redirect("/login?out=1", 303);
    });

    pages.get("/", async (request, reply) => {
      const q = WorklistQuery.safeParse(request.query);
      const query = q.success ? q.data : WorklistQuery.parse({});
      const data = await worklist(db, query);
      return reply
        .type("text/html")
        .send(worklistPage(query, data, user(request), reply.csrfToken()));
    });

    // The worklist's counts, refreshed by review.js while the page is open ("live counts").
    pages.get("/counts.json", async (request) => {
      const q = WorklistQuery.safeParse(request.query);
      return (await worklist(db, q.success ? q.data : WorklistQuery.parse({}))).counts;
    });

    /** The study UID of the path, or null when it is not one (answered 404, never 500). */
    const studyUid = (request: FastifyRequest) => {
      const p = z.object({ uid: z.string().regex(/^[0-9.]{1,64}$/) }).safeParse(request.params);
      return p.success ? p.data.uid : null;
    };
    pages.get("/studies/:uid", async (request, reply) => {
      const uid = studyUid(request);
      const loaded = uid ? await loadStudy(db, uid) : null;
      if (!uid || !loaded) return reply.callNotFound();
      await audit("review.study-viewed", request, {
        studyInstanceUid: uid,
        details: { revision: loaded.study.revision },
      });
      const query = request.query as { signed?: string; previous?: string; amend?: string };
      const previous =
        typeof query.previous === "string" && /^[0-9.]{1,64}$/.test(query.previous)
          ? await db.study.findUnique({ where: { studyInstanceUid: query.previous } })
          : null;
      const notice = previous
        ? html`Signed ${personName(previous.patientName)} (${dicomDate(previous.studyDate)}): the signed report is on its way to the PACS. This is the next study awaiting review: here Enter signs only after another key or a click. <a href="/studies/${previous.studyInstanceUid}" id="back">← back to the signed study</a>`
        : query.signed
          ? html`Signed: the signed report is on its way to the PACS.`
          : undefined;
      return reply.type("text/html").send(
        studyPage(loaded, user(request), reply.csrfToken(), {
          ...(notice ? { notice } : {}),
          ...(config.REVIEW_VIEWER_URL ? { viewerUrl: config.REVIEW_VIEWER_URL } : {}),
          priors: await loadPriors(db, loaded.study),
          amend: query.amend === "1",
          imageSizes: await loadImageSizes(loaded),
          ungraded: await loadUngradedImages(db, loaded),
        }),
      );
    });

    // The report text for the grades chosen so far: the study page shows it as they change.
    pages.get("/studies/:uid/report-text", async (request, reply) => {
      const uid = studyUid(request);
      const loaded = uid ? await loadStudy(db, uid) : null;
      if (!uid || !loaded?.job) return reply.callNotFound();
      const form = SignForm.safeParse(request.query);
      if (!form.success) return reply.status(400).send({ error: "not understood" });
      return previewText(loaded, form.data);
    });

    pages.get("/studies/:uid/instances/:sop", async (request, reply) => {
      const parsed = z
        .object({ uid: z.string(), sop: z.string().regex(/^[0-9.]{1,64}\.jpg$/) })
        .safeParse(request.params);
      if (!parsed.success) return reply.callNotFound();
      const p = parsed.data;
      const instance = await db.instance.findUnique({
        where: { sopInstanceUid: p.sop.slice(0, -4) },
        include: { study: true },
      });
      if (!instance?.spoolPath || instance.study.studyInstanceUid !== p.uid) {
        return reply.callNotFound();
      }
      const view = z
        .object({
          full: z.literal("1").optional(),
          wc: z.coerce.number().finite().optional(),
          ww: z.coerce.number().finite().positive().optional(),
        })
        .safeParse(request.query);
      const v = view.success ? view.data : {};
      const full = v.full === "1";
      const voi = v.wc !== undefined && v.ww !== undefined ? { center: v.wc, width: v.ww } : null;
      const viewKey = `${full ? "full" : "fit"}:${voi ? `${voi.center}/${voi.width}` : "voi"}`;
      if (cachedPicture(request, reply, instance.sopInstanceUid, instance.sha256, viewKey))
        return reply;
      const jpeg = await radiographJpeg(instance.spoolPath, {
        full,
        ...(voi ? { window: voi } : {}),
      });
      return reply.type("image/jpeg").send(jpeg);
    });

    pages.get("/knees/:id/:kind", async (request, reply) => {
      const p = z
        .object({
          id: z.string().uuid(),
          kind: z.enum(["crop.png", "heatmap.png", "region.png"]),
        })
        .safeParse(request.params);
      if (!p.success) return reply.callNotFound();
      if (p.data.kind === "region.png") {
        const knee = await db.kneeResult.findUnique({
          where: { id: p.data.id },
          select: { region: true, instance: { select: { spoolPath: true, sha256: true } } },
        });
        const region = knee?.region as { x: number; y: number; width: number; height: number };
        if (!region || !knee?.instance.spoolPath) return reply.callNotFound();
        const { spoolPath, sha256 } = knee.instance;
        if (cachedPicture(request, reply, "region", sha256, JSON.stringify(region))) return reply;
        return reply.type("image/png").send(await kneeRegionPng(spoolPath, region));
      }
      const knee = await db.kneeResult.findUnique({
        where: { id: p.data.id },
        select: { cropPng: true, heatmapPng: true },
      });
      if (!knee?.cropPng) return reply.callNotFound();
      if (p.data.kind === "crop.png") {
        if (cachedPicture(request, reply, "crop", knee.cropPng)) return reply;
        return reply.type("image/png").send(Buffer.from(knee.cropPng));
      }
      if (!knee.heatmapPng) return reply.callNotFound();
      if (cachedPicture(request, reply, "heatmap", knee.cropPng, knee.heatmapPng)) return reply;
      return reply.type("image/png").send(await heatmapPng(knee.cropPng, knee.heatmapPng));
    });

    pages.post("/studies/:uid/sign", async (request, reply) => {
      const uid = studyUid(request);
      if (!uid) return reply.callNotFound();
      const u = user(request);
      if (u.role !== "RADIOLOGIST") {
        await audit("review.sign-refused", request, {
          studyInstanceUid: uid,
          details: { reason: `role ${u.role}` },
        });
        return forbidden(request, reply, "Only radiologists sign reports.");
      }
      const started = Date.now();
      const form = SignForm.safeParse(request.body);
      if (!form.success) {
        return reply
          .status(400)
          .type("text/html")
          .send(
            page(
              "Error 400",
              html`<h1>Not signed</h1><p class="error" role="alert">The form was not understood: every field once, as text. Open the study again and sign from its page.</p><p><a href="/studies/${uid}">Back to the study</a></p>`,
              { user: u, csrf: reply.csrfToken() },
            ),
          );
      }
      try {
        const review = await signStudy(db, deps.reportQueue, {
          studyInstanceUid: uid,
          user: u,
          form: form.data,
          address: request.ip,
        });
        log.info(
          {
            event: "review.signed",
            studyInstanceUid: uid,
            reviewId: review.id,
            ms: Date.now() - started,
          },
          "study signed",
        );
      } catch (error) {
        if (!(error instanceof SignError)) throw error;
        if (error.statusCode === 409) {
          await audit("review.sign-refused", request, {
            studyInstanceUid: uid,
            details: { reason: error.message },
          });
        }
        return reply
          .status(error.statusCode)
          .type("text/html")
          .send(
            page(
              `Error ${error.statusCode}`,
              html`<h1>Not signed</h1><p class="error" role="alert">${error.message}</p><p><a href="/studies/${uid}">Back to the study</a></p>`,
              {
                user: u,
                csrf: reply.csrfToken(),
              },
            ),
          );
      }
      // "Sign & next": the next study awaiting review opens, with a way back to this one.
      if (form.data.after === "next") {
        const next = (await worklist(db, WorklistQuery.parse({ show: "awaiting" }))).rows.find(
          (r) => r.studyInstanceUid !== uid,
        );
        if (next) {
          return reply.redirect(
            `/studies/${next.studyInstanceUid}?previous=${encodeURIComponent(uid)}`,
            303,
          );
        }
      }
      return reply.redirect(`/studies/${uid}?signed=1`, 303);
    });

    // --- accounts (admins) ---------------------------------------------------------------------
    const ADMIN_ONLY = "Only admins manage users.";
    /** The users page again, with what became of the admin's action (status 200, or the error's). */
    const usersAnswer = async (
      request: FastifyRequest,
      reply: FastifyReply,
      outcome: { error?: string; status?: number; notice?: string } = {},
    ) =>
      reply
        .status(outcome.error ? (outcome.status ?? 400) : 200)
        .type("text/html")
        .send(await usersPage(db, user(request), reply.csrfToken(), outcome));
    const failure = (e: Error) => e.message;
    pages.get("/users", async (request, reply) => {
      if (user(request).role !== "ADMIN") return forbidden(request, reply, ADMIN_ONLY);
      return usersAnswer(request, reply);
    });
    pages.post("/users", async (request, reply) => {
      const u = user(request);
      if (u.role !== "ADMIN") return forbidden(request, reply, ADMIN_ONLY);
      const form = NewUser.safeParse(request.body);
      if (!form.success) {
        const error = form.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
        return usersAnswer(request, reply, { error });
      }
      const error = await addUser(db, form.data, u.username).then(() => undefined, failure);
      return usersAnswer(
        request,
        reply,
        error ? { error } : { notice: `Added ${form.data.username}.` },
      );
    });
    pages.post("/users/:username/disable", async (request, reply) => {
      const u = user(request);
      if (u.role !== "ADMIN") return forbidden(request, reply, ADMIN_ONLY);
      const { username } = request.params as { username: string };
      if (username === u.username) {
        return usersAnswer(request, reply, { error: "You cannot disable your own account." });
      }
      const error = await disableUser(db, username, u.username).then(() => undefined, failure);
      return usersAnswer(
        request,
        reply,
        error ? { error, status: 404 } : { notice: `Disabled ${username}.` },
      );
    });

    const Days = z.object({ days: z.coerce.number().int().min(1).max(3650).optional() });
    pages.get("/agreement", async (request, reply) => {
      const q = Days.safeParse(request.query);
      const report = await agreementReport(db, config, q.success ? q.data.days : undefined);
      return reply.type("text/html").send(agreementPage(report, user(request), reply.csrfToken()));
    });
    pages.get("/agreement/confusion.png", async (request, reply) => {
      const q = Days.safeParse(request.query);
      const report = await agreementReport(db, config, q.success ? q.data.days : undefined);
      return reply.type("image/png").send(await confusionPng(report));
    });
  });
  return app;
}
