import type { Db } from "@kneegrade/db";
import { reportUids } from "@kneegrade/dicom-writers";
import { createLogger } from "@kneegrade/log";
import { buildReviewApp, localPath } from "@kneegrade/review";
import { addUser, passwordProblem } from "@kneegrade/review-data";
import type { Queue } from "bullmq";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupConfig, testConfig } from "../helpers/env.ts";
import { completedGradingJob, gradedKnee, recordedInstance } from "../helpers/graded.ts";
import { startReviewApp } from "../helpers/review-app.ts";
import { newUid } from "../helpers/studies.ts";

const quiet = createLogger("test", "silent");
const HOST = "review.example:8484";
const ORIGIN = `http://${HOST}`;
/** The attacker's page: same host name, another port — the same site for cookies. */
const EVIL = "http://review.example:9999";
const sfx = Math.random().toString(36).slice(2, 8);
const ADMIN = { username: `adm-${sfx}`, password: "tangerine orbit saxophone 71" };
const RAD = { username: `rad-${sfx}`, password: "violet harbour lantern 2048" };

type Jar = Record<string, string>;
const cookieHeader = (jar: Jar) =>
  Object.entries(jar)
    .map(([k, v]) => `${k}=${v}`)
    .join("; ");
const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();

describe("review pages: CSRF, redirects, forms, logins, passwords, display", () => {
  let db: Db;
  let app: FastifyInstance;
  let queue: Queue;
  let cleanup: () => Promise<void>;
  let studyUid: string;
  let aiSr: string;
  let kneeIds: string[];

  /** An HTTP request as a browser on this site would send it, keeping cookies in `jar`. */
  const send = async (
    jar: Jar,
    method: "GET" | "POST",
    url: string,
    o: { body?: string; headers?: Record<string, string>; remoteAddress?: string } = {},
  ) => {
    const r = await app.inject({
      method,
      url,
      payload: o.body,
      remoteAddress: o.remoteAddress ?? "192.0.2.10",
      headers: {
        host: HOST,
        ...(Object.keys(jar).length ? { cookie: cookieHeader(jar) } : {}),
        ...(o.body !== undefined ? { "content-type": "application/x-www-form-urlencoded" } : {}),
        ...o.headers,
      },
    });
    for (const c of r.cookies as { name: string; value: string; expires?: Date }[]) {
      if (c.value === "" || (c.expires && c.expires.getTime() < Date.now())) delete jar[c.name];
      else jar[c.name] = c.value;
    }
    return r;
  };
  const tokenOf = (body: string) => /name="_csrf" value="([^"]+)"/.exec(body)?.[1];
  const unescapeHtml = (s: string) =>
    s
      .replace(/&lt;/g, "<")
      .replace(/&gt;/g, ">")
      .replace(/&quot;/g, '"')
      .replace(/&#39;/g, "'")
      .replace(/&amp;/g, "&");
  /** The report text the study page shows (what a radiologist submits unchanged). */
  const textOf = (body: string) => ({
    findings: unescapeHtml(/name="findings"[^>]*>([^<]*)<\/textarea>/.exec(body)![1]!),
    impression: unescapeHtml(/name="impression"[^>]*>([^<]*)<\/textarea>/.exec(body)![1]!),
  });
  let clients = 0;
  const login = async (who: { username: string; password: string }) => {
    const jar: Jar = {};
    // Each login from its own address: the per-address limit is not what these tests are about.
    const remoteAddress = `192.0.2.${++clients}`;
    const page = await send(jar, "GET", "/login", { remoteAddress });
    const r = await send(jar, "POST", "/login", {
      body: form({ ...who, _csrf: tokenOf(page.body)!, next: "/" }),
      headers: { origin: ORIGIN, "sec-fetch-site": "same-origin" },
      remoteAddress,
    });
    expect(r.statusCode, r.body).toBe(303);
    expect(jar.kneegrade_session).toBeTruthy();
    return jar;
  };
  /** A token and login cookie the attacker got for themselves from the login page. */
  const attackerPair = async () => {
    const jar: Jar = {};
    const page = await send(jar, "GET", "/login");
    return { cookie: jar.kneegrade_login!, token: tokenOf(page.body)! };
  };
  let shownText = { findings: "", impression: "" };
  const signFields = (token: string, grades: string[]) => ({
    _csrf: token,
    predecessor: aiSr,
    ...Object.fromEntries(kneeIds.map((id, i) => [`knee_${id}`, grades[i]!])),
    ...shownText,
  });

  beforeAll(async () => {
    const started = await startReviewApp({ REVIEW_LOGIN_ATTEMPTS_PER_MINUTE: "5" });
    ({ db, queue, app } = started);
    const { config } = started;
    await addUser(db, {
      ...ADMIN,
      displayName: "Admin^Ada",
      organisation: "Test Hospital",
      role: "admin",
    });
    await addUser(db, {
      ...RAD,
      displayName: "Doe^Jane",
      organisation: "Test Hospital",
      role: "radiologist",
    });
    // One graded study (AI: right KL 3, left KL 2) with a hostile-looking identity.
    studyUid = newUid();
    const study = await db.study.create({
      data: {
        studyInstanceUid: studyUid,
        status: "REPORTED",
        patientName: "Evil^\u202eKcin",
        patientId: "ID\u202e9876",
        studyDate: "20240131",
        lastReceivedAt: new Date(),
      },
    });
    const instance = await recordedInstance(db, study.id);
    const job = await completedGradingJob(db, study.id, "sec");
    aiSr = reportUids(job.id).aiSr;
    kneeIds = [];
    for (const [laterality, klGrade] of [
      ["RIGHT", 3],
      ["LEFT", 2],
    ] as const) {
      const at = { gradingJobId: job.id, instanceId: instance.id };
      const k = await gradedKnee(db, at, laterality, klGrade, {
        probabilities: [0.1, 0.1, 0.2, 0.5, 0.1],
      });
      kneeIds.push(k.id);
    }
    cleanup = async () => {
      await app.close();
      await queue.close();
      await db.$disconnect();
      await cleanupConfig(config);
    };
  });
  afterAll(async () => {
    await cleanup?.();
  });

  it("refuses a planted cookie/token pair and cross-site forms for every state-changing action", async () => {
    const admin = await login(ADMIN);
    const rad = await login(RAD);
    shownText = textOf((await send(rad, "GET", `/studies/${studyUid}`)).body);
    expect(shownText.findings).toContain("grade");
    const pair = await attackerPair();
    const usersBefore = await db.user.count();
    const reviewsBefore = await db.review.count();
    const sessionsBefore = await db.session.count();
    const newAdmin = {
      username: `evil-${sfx}`,
      displayName: "Evil^Admin",
      organisation: "Nowhere",
      role: "admin",
      password: "plum tractor velvet 93 galaxy",
    };
    const attacks: [string, Jar, string, Record<string, string>][] = [
      ["create an admin", admin, "/users", newAdmin],
      ["disable the radiologist", admin, `/users/${RAD.username}/disable`, {}],
      ["sign forged grades", rad, `/studies/${studyUid}/sign`, signFields("", ["0", "0"])],
      ["log the admin out", admin, "/logout", {}],
    ];
    for (const [what, victim, url, fields] of attacks) {
      const variants: [string, Jar, Record<string, string>, Record<string, string>][] = [
        // The planted pair: the victim's session, the attacker's login cookie and its token.
        [
          "planted pair from another port",
          { ...victim, kneegrade_login: pair.cookie },
          { ...fields, _csrf: pair.token },
          { origin: EVIL, "sec-fetch-site": "same-site" },
        ],
        // The same without any browser header (curl): the token alone must not pass.
        [
          "planted pair, no Origin",
          { ...victim, kneegrade_login: pair.cookie },
          { ...fields, _csrf: pair.token },
          {},
        ],
        // An auto-submitted cross-site form: no token it could know.
        ["cross-site form", victim, { ...fields }, { origin: EVIL, "sec-fetch-site": "same-site" }],
        [
          "cross-site form, null origin",
          victim,
          { ...fields, _csrf: pair.token },
          { origin: "null" },
        ],
        [
          "sandboxed frame: null origin, cross-site",
          victim,
          { ...fields, _csrf: pair.token },
          { origin: "null", "sec-fetch-site": "cross-site" },
        ],
      ];
      for (const [how, jar, body, headers] of variants) {
        const r = await send({ ...jar }, "POST", url, { body: form(body), headers });
        expect(r.statusCode, `${what}: ${how}`).toBe(403);
      }
    }
    // A valid token of the victim's own page, but sent by another site: refused by origin.
    const page = await send(admin, "GET", "/users");
    const own = tokenOf(page.body)!;
    const crossWithOwn = await send({ ...admin }, "POST", "/users", {
      body: form({ ...newAdmin, _csrf: own }),
      headers: { origin: EVIL, "sec-fetch-site": "same-site" },
    });
    expect(crossWithOwn.statusCode).toBe(403);
    expect(await db.user.count()).toBe(usersBefore);
    expect(await db.user.findUnique({ where: { username: newAdmin.username } })).toBeNull();
    expect((await db.user.findUniqueOrThrow({ where: { username: RAD.username } })).disabled).toBe(
      false,
    );
    expect(await db.review.count()).toBe(reviewsBefore);
    expect(await db.session.count()).toBe(sessionsBefore);
    expect(await queue.count()).toBe(0);
    const refusals = await db.auditEvent.count({ where: { event: "review.csrf-refused" } });
    expect(refusals).toBeGreaterThanOrEqual(21);

    // The victim's own forms still work: the admin adds a user, the radiologist signs.
    const added = await send(admin, "POST", "/users", {
      body: form({ ...newAdmin, username: `ok-${sfx}`, role: "viewer", _csrf: own }),
      headers: { origin: ORIGIN, "sec-fetch-site": "same-origin" },
    });
    expect(added.statusCode, added.body).toBe(200);
    expect(await db.user.findUnique({ where: { username: `ok-${sfx}` } })).not.toBeNull();
    const studyPage = await send(rad, "GET", `/studies/${studyUid}`);
    const signed = await send(rad, "POST", `/studies/${studyUid}/sign`, {
      body: form(signFields(tokenOf(studyPage.body)!, ["3", "2"])),
      headers: { origin: ORIGIN, "sec-fetch-site": "same-origin" },
    });
    expect(signed.statusCode, signed.body).toBe(303);
    expect(await db.review.count()).toBe(reviewsBefore + 1);
    expect(await queue.count()).toBe(1);
  });

  it("binds the token to the session: a new login is a new token, the old one is worthless", async () => {
    const first = await login(ADMIN);
    const oldToken = tokenOf((await send(first, "GET", "/users")).body)!;
    const second = await login(ADMIN);
    const newToken = tokenOf((await send(second, "GET", "/users")).body)!;
    expect(newToken).not.toBe(oldToken);
    const r = await send(second, "POST", "/users", {
      body: form({
        username: `stale-${sfx}`,
        displayName: "Stale^Token",
        organisation: "X",
        role: "viewer",
        password: "plum tractor velvet 93 galaxy",
        _csrf: oldToken,
      }),
    });
    expect(r.statusCode).toBe(403);
    expect(await db.user.findUnique({ where: { username: `stale-${sfx}` } })).toBeNull();
    // Logging out with the page's own token ends the session.
    const out = await send(second, "POST", "/logout", { body: form({ _csrf: newToken }) });
    expect(out.statusCode).toBe(303);
    expect((await send(second, "GET", "/users")).statusCode).toBe(303);
  });

  it("goes after login only to paths of this site", async () => {
    for (const next of [
      "//evil.example/x",
      "/\t/evil.example/path",
      "/%09/evil.example/path",
      "/\\evil.example",
      "/\r\nSet-Cookie: x=1",
      "https://evil.example/",
      "javascript:alert(1)",
      "/\u0000",
    ]) {
      const p = localPath(next);
      expect(new URL(p, "http://review.invalid").origin, JSON.stringify(next)).toBe(
        "http://review.invalid",
      );
      expect(p, JSON.stringify(next)).not.toMatch(/[\t\r\n\\]|^\/\//);
    }
    expect(localPath("/studies/1.2.3?signed=1")).toBe("/studies/1.2.3?signed=1");
    // Through the pages: the login form carries only a local path, and CR/LF never gives a 500.
    const jar: Jar = {};
    const page = await send(jar, "GET", `/login?next=${encodeURIComponent("/\t/evil.example/x")}`);
    expect(page.body).toContain('name="next" value="/"');
    const r = await send(jar, "POST", "/login", {
      body: form({ ...RAD, _csrf: tokenOf(page.body)!, next: "/\r\n/evil.example" }),
    });
    expect(r.statusCode).toBe(303);
    expect(r.headers.location).toBe("/");
  });

  it("answers 400 to a sign form it does not understand, never 500, and signs nothing", async () => {
    const rad = await login(RAD);
    const token = tokenOf((await send(rad, "GET", `/studies/${studyUid}`)).body)!;
    const before = await db.review.count();
    const repeated = `${form(signFields(token, ["1", "1"]))}&findings=again`;
    const r1 = await send(rad, "POST", `/studies/${studyUid}/sign`, { body: repeated });
    expect(r1.statusCode).toBe(400);
    expect(r1.body).toContain("every field once");
    const r2 = await app.inject({
      method: "POST",
      url: `/studies/${studyUid}/sign`,
      payload: JSON.stringify({ ...signFields(token, ["1", "1"]), findings: 5 }),
      headers: { host: HOST, cookie: cookieHeader(rad), "content-type": "application/json" },
    });
    expect(r2.statusCode).toBe(400);
    expect(await db.review.count()).toBe(before);
  });

  it("limits failed logins per account, whatever the address, and per address", async () => {
    const victim = `lock-${sfx}`;
    await addUser(db, {
      username: victim,
      password: "saffron meadow quartz 5150",
      displayName: "Lock^Ed",
      organisation: "X",
      role: "viewer",
    });
    const attempt = async (password: string, remoteAddress: string) => {
      const jar: Jar = {};
      const page = await send(jar, "GET", "/login", { remoteAddress });
      return (
        await send(jar, "POST", "/login", {
          body: form({ username: victim, password, _csrf: tokenOf(page.body)! }),
          remoteAddress,
        })
      ).statusCode;
    };
    // Five addresses, one guess each: the account's limit (5 a minute) is reached.
    const guesses = [];
    for (let i = 0; i < 5; i++) guesses.push(await attempt("wrong guess", `198.51.100.${i + 1}`));
    expect(guesses).toEqual([401, 401, 401, 401, 401]);
    // From a sixth address, even the right password waits.
    expect(await attempt("saffron meadow quartz 5150", "198.51.100.9")).toBe(429);
    const locked = await db.auditEvent.count({ where: { event: "review.login-locked" } });
    expect(locked).toBeGreaterThanOrEqual(1);
  });

  it("believes X-Forwarded-For only from a configured proxy", async () => {
    const config = await testConfig({
      REVIEW_TRUSTED_PROXIES: "10.0.0.5",
      REVIEW_LOGIN_ATTEMPTS_PER_MINUTE: "2",
    });
    const proxied = await buildReviewApp({ db, config, log: quiet, reportQueue: queue });
    try {
      const post = (remoteAddress: string, forwardedFor: string) =>
        proxied.inject({
          method: "POST",
          url: "/login",
          payload: "username=nobody&password=x",
          remoteAddress,
          headers: {
            host: HOST,
            "content-type": "application/x-www-form-urlencoded",
            "x-forwarded-for": forwardedFor,
          },
        });
      // Behind the proxy, two clients each have their own limit.
      const a = [await post("10.0.0.5", "203.0.113.1"), await post("10.0.0.5", "203.0.113.1")];
      expect(a.map((r) => r.statusCode)).toEqual([403, 403]);
      expect((await post("10.0.0.5", "203.0.113.1")).statusCode).toBe(429);
      expect((await post("10.0.0.5", "203.0.113.2")).statusCode).toBe(403);
      // From anyone else the header is ignored: spoofing it does not reset the limit.
      await post("192.0.2.50", "203.0.113.3");
      await post("192.0.2.50", "203.0.113.4");
      expect((await post("192.0.2.50", "203.0.113.5")).statusCode).toBe(429);
      const audited = await db.auditEvent.findFirst({
        where: { event: "review.csrf-refused", address: "203.0.113.2" },
      });
      expect(audited, "the audit records the client behind the proxy").not.toBeNull();
    } finally {
      await proxied.close();
      await cleanupConfig(config);
    }
  });

  it("refuses trivial passwords, and those made of the account's own names", () => {
    for (const p of [
      "aaaaaaaaaaaa",
      "password1234",
      "qwertyuiop12",
      "123456789012",
      "Summer2024!",
    ]) {
      expect(passwordProblem(p), p).not.toBeNull();
    }
    expect(passwordProblem("janedoe2026!", ["jane.doe", "Doe^Jane"])).not.toBeNull();
    for (const p of ["tangerine orbit saxophone 71", "correct horse battery staple"]) {
      expect(passwordProblem(p), p).toBeNull();
    }
  });

  it("shows DICOM text in its stored order: no bidirectional overrides reach the page", async () => {
    const rad = await login(RAD);
    for (const url of ["/?show=all", `/studies/${studyUid}`]) {
      const body = (await send(rad, "GET", url)).body;
      expect(body, url).toContain("ID9876");
      expect(body, url).not.toMatch(/[\u202a-\u202e\u2066-\u2069\u200e\u200f]/);
    }
  });
});
