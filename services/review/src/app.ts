/**
 * The review pages as a Fastify app, composed of plugins: one per concern (cookies, form bodies,
 * security headers, login rate limit, static files), the auth plugin (sessions in PostgreSQL, login
 * and logout, CSRF defence bound to the session: auth.ts), the error page (error-page.ts), and the
 * routes of each page module (worklist, study, images, sign, admin, agreement) behind the session.
 * Nothing but the login page, the static files and /healthz answers without a session.
 * docs/SECURITY.md has the threat model.
 */
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import fastifyCookie from "@fastify/cookie";
import fastifyFormbody from "@fastify/formbody";
import fastifyHelmet from "@fastify/helmet";
import fastifyRateLimit from "@fastify/rate-limit";
import fastifyStatic from "@fastify/static";
import Fastify from "fastify";
import { adminRoutes } from "./admin.ts";
import { agreementRoutes } from "./agreement.ts";
import { authPlugin, requireSession } from "./auth.ts";
import type { ReviewDeps } from "./context.ts";
import { errorHandler } from "./error-page.ts";
import { imageRoutes } from "./images.ts";
import { signRoutes } from "./sign.ts";
import { studyRoutes } from "./study.ts";
import { worklistRoutes } from "./worklist.ts";

export { cookieNames, LOGIN_COOKIE, localPath, SESSION_COOKIE } from "./auth.ts";
export type { ReportQueue, ReviewConfig, ReviewDeps } from "./context.ts";

const PUBLIC_DIR = fileURLToPath(new URL("../public/", import.meta.url));

/** Security headers: a strict CSP, HSTS under TLS, and referrers kept to this site. */
const helmetOptions = (secure: boolean) => ({
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
  referrerPolicy: { policy: "same-origin" as const },
});

export async function buildReviewApp(deps: ReviewDeps) {
  const { config, log } = deps;
  const secure = Boolean(deps.https);
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

  await app.register(fastifyCookie, { secret });
  await app.register(fastifyFormbody);
  await app.register(fastifyHelmet, helmetOptions(secure));
  await app.register(fastifyRateLimit, { global: false });
  await app.register(fastifyStatic, { root: PUBLIC_DIR, prefix: "/static/" });
  app.setErrorHandler(errorHandler(log));
  await app.register(authPlugin, { ...deps, secret });

  app.get("/healthz", async () => ({ ok: true }));
  // Browsers ask for /favicon.ico whatever the page links: the same icon as the pages' link.
  app.get("/favicon.ico", async (_request, reply) =>
    reply.header("cache-control", "public, max-age=86400").sendFile("favicon.svg"),
  );

  await app.register(async (pages) => {
    pages.addHook("onRequest", requireSession);
    for (const routes of [
      worklistRoutes,
      studyRoutes,
      imageRoutes,
      signRoutes,
      adminRoutes,
      agreementRoutes,
    ]) {
      await pages.register(routes, deps);
    }
  });
  return app;
}
