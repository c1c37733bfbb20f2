/**
 * The radiologist's review with real parts: DCMTK storescu (the modality) → listener → worker →
 * reporter → Orthanc, and the review pages driven by real headless Chromium (Debian's package,
 * through playwright-core): log in, open the study, change a grade with the keyboard, sign → a
 * VERIFIED SR revision in Orthanc (dciodvfy, dsrdump), the review and audit rows in PostgreSQL,
 * the agreement page and `status` count it. Also what must be refused.
 */
import { execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { signedSrUid } from "@kneegrade/dicom-writers";
import { createLogger } from "@kneegrade/log";
import { redeliver } from "@kneegrade/report-jobs";
import { type RunningReporter, startReporter } from "@kneegrade/reporter";
import { buildReviewApp, type RunningReview, startReview } from "@kneegrade/review";
import { addUser, disableUser } from "@kneegrade/review-data";
import { composeBilateral, radiographDicom } from "@kneegrade/sample-radiographs";
import { type RunningWorker, startWorker } from "@kneegrade/worker";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectStatus } from "../../packages/cli/src/status.ts";
import { selfSignedCert } from "../helpers/certs.ts";
import { CLI, configEnv, freePort, kill, startServe } from "../helpers/cli.ts";
import { dciodvfyErrors, storescu } from "../helpers/dcmtk.ts";
import { closeAll, type Harness, pipelineSettings, startHarness, waitFor } from "../helpers/env.ts";
import { type RunningOrthanc, startOrthanc } from "../helpers/orthanc.ts";
import { REPO_ROOT, SHARED_DATA } from "../helpers/paths.ts";
import { newUid } from "../helpers/studies.ts";

const run = promisify(execFile);
const work = join(tmpdir(), `kneegrade-review-${process.pid}`);
/** Screenshots: var/screenshots (docs/img holds the ones docs/REVIEW.md shows). */
const SHOTS = join(REPO_ROOT, "var", "screenshots");
const VAL = `${SHARED_DATA}knee-kl/val/`;
const quiet = createLogger("test", "silent");
const suffix = Math.random().toString(36).slice(2, 8);
const RADIOLOGIST = { username: `rad-${suffix}`, password: "correct horse battery staple" };
const VIEWER = { username: `view-${suffix}`, password: "viewer password 123" };

interface OrthancInstance {
  ID: string;
  MainDicomTags: Record<string, string>;
}

describe("review pages: storescu → kneegrade → radiologist signs in Chromium → Orthanc", () => {
  let orthanc: RunningOrthanc;
  let h: Harness;
  let worker: RunningWorker | undefined;
  let reporter: RunningReporter | undefined;
  let review: RunningReview | undefined;
  let browser: Browser;
  let radiologist: BrowserContext;
  let studyInstanceUid: string;

  beforeAll(async () => {
    await mkdir(work, { recursive: true });
    await mkdir(SHOTS, { recursive: true });
    orthanc = await startOrthanc("ORTHANC");
    h = await startHarness({
      ...(await pipelineSettings(orthanc.dicomPort, "test")),
      REVIEW_PORT: "0",
      REVIEW_AGREEMENT_MIN_KNEES: "1",
      REVIEW_AGREEMENT_ALERT: "0.9",
      REVIEW_LOGIN_ATTEMPTS_PER_MINUTE: "20",
      INSTITUTION_NAME: "Test Hospital",
    });
    worker = await startWorker(h.config, h.db, quiet);
    reporter = await startReporter(h.config, h.db, quiet);
    review = await startReview(h.config, h.db, quiet);
    // The radiologist through the real CLI (password on stdin), the viewer through the package.
    const cli = spawn(
      process.execPath,
      [
        CLI,
        "user",
        "add",
        RADIOLOGIST.username,
        "--role",
        "radiologist",
        "--name",
        "Doe^Jane",
        "--organisation",
        "Test Hospital Radiology",
        "--password-stdin",
      ],
      { cwd: REPO_ROOT, env: { ...process.env, ...configEnv(h.config) } },
    );
    let out = "";
    cli.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    cli.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    cli.stdin.end(`${RADIOLOGIST.password}\n`);
    const code = await new Promise((r) => cli.once("exit", r));
    expect(code, out).toBe(0);
    expect(out).toContain(`added: ${RADIOLOGIST.username}`);
    await addUser(h.db, {
      ...VIEWER,
      displayName: "Viewer^Val",
      organisation: "Test Hospital",
      role: "viewer",
    });
    browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      args: ["--no-sandbox"],
    });
    radiologist = await browser.newContext({ viewport: { width: 1400, height: 1000 } });

    // A bilateral study, graded and reported (the unverified SR in Orthanc).
    const r = await composeBilateral([`${VAL}1/9003380R.png`, `${VAL}3/9107980R.png`]);
    studyInstanceUid = newUid();
    const path = join(work, "bilateral.dcm");
    await writeFile(path, radiographDicom(r, { studyInstanceUid }));
    const sent = await storescu(h.target, [path]);
    expect(sent.code, sent.stderr).toBe(0);
    await waitFor(
      async () =>
        (await h.db.study.findUnique({ where: { studyInstanceUid } }))?.status === "REPORTED"
          ? true
          : undefined,
      120_000,
      "the study REPORTED",
    );
  }, 300_000);

  afterAll(async () => {
    await closeAll(browser, review, reporter, worker, h, orthanc);
    await rm(work, { recursive: true, force: true });
  });

  const findSrs = async () => {
    const response = await fetch(`${orthanc.httpUrl}/tools/find`, {
      method: "POST",
      body: JSON.stringify({
        Level: "Instance",
        Query: { StudyInstanceUID: studyInstanceUid, Modality: "SR" },
        Expand: true,
      }),
    });
    return (await response.json()) as OrthancInstance[];
  };

  /** Waits until Orthanc holds the SR with this SOP Instance UID, and returns it. */
  const srInOrthanc = (sopInstanceUid: string, what: string) =>
    waitFor(
      async () => (await findSrs()).find((i) => i.MainDicomTags.SOPInstanceUID === sopInstanceUid),
      60_000,
      what,
    );

  /** An SR from Orthanc as a file, with its dsrdump and dciodvfy's error lines. */
  async function fetchSr(orthancId: string, name: string) {
    const file = join(work, name);
    const response = await fetch(`${orthanc.httpUrl}/instances/${orthancId}/file`);
    await writeFile(file, new Uint8Array(await response.arrayBuffer()));
    const dump = (await run("dsrdump", ["-Ee", "+Pl", file])).stdout;
    return { file, dump, errors: await dciodvfyErrors(file) };
  }

  async function logIn(context: BrowserContext, who: { username: string; password: string }) {
    const page = await context.newPage();
    await page.goto(`${review!.url}/`);
    await page.fill('input[name="username"]', who.username);
    await page.fill('input[name="password"]', who.password);
    await Promise.all([page.waitForURL(/\/(\?.*)?$/), page.click('button[type="submit"]')]);
    return page;
  }

  /** A POST from inside the page (same origin, the page's own cookies). */
  const post = (page: Page, path: string, form: Record<string, string>) =>
    page.evaluate(
      async ({ path, form }) => {
        const r = await fetch(path, {
          method: "POST",
          body: new URLSearchParams(form),
          redirect: "manual",
        });
        // A redirect (the answer to a successful POST) is opaque to page scripts: status 0.
        return { status: r.status, redirected: r.type === "opaqueredirect", text: await r.text() };
      },
      { path, form },
    );

  /** The sign form of the open study page, as the browser would send it. */
  const signForm = (page: Page) =>
    page.evaluate(`Object.fromEntries(
      [...new FormData(document.getElementById("sign-form")).entries()].map(([k, v]) => [k, String(v)]))`) as Promise<
      Record<string, string>
    >;

  it("shows nothing without a session: the login page", async () => {
    const r = await fetch(`${review!.url}/studies/${studyInstanceUid}`, { redirect: "manual" });
    expect(r.status).toBe(303);
    expect(r.headers.get("location")).toBe(
      `/login?next=${encodeURIComponent(`/studies/${studyInstanceUid}`)}`,
    );
    for (const path of ["/", "/agreement", "/agreement/confusion.png"]) {
      const p = await fetch(`${review!.url}${path}`, { redirect: "manual" });
      expect(p.status, path).toBe(303);
    }
    const page = await browser.newPage();
    await page.goto(`${review!.url}/`);
    expect(new URL(page.url()).pathname).toBe("/login");
    expect(await page.locator('input[name="password"]').count()).toBe(1);
    expect(await page.content()).not.toContain("Synthetic");
    await page.close();
  });

  it("refuses a wrong password and audits it (who, when, from where)", async () => {
    const before = new Date();
    const page = await browser.newPage();
    await page.goto(`${review!.url}/login`);
    await page.fill('input[name="username"]', RADIOLOGIST.username);
    await page.fill('input[name="password"]', "not the password");
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith("/login") && r.request().method() === "POST"),
      page.click('button[type="submit"]'),
    ]);
    expect(response.status()).toBe(401);
    expect(await page.textContent(".error")).toContain("Wrong user name or password");
    expect((await page.context().cookies()).map((c) => c.name)).not.toContain("kneegrade_session");
    const audit = await h.db.auditEvent.findFirst({
      where: { event: "review.login-failed", at: { gte: before } },
      orderBy: { at: "desc" },
    });
    expect(audit).toMatchObject({ actor: "anonymous", address: "127.0.0.1" });
    expect(audit?.details).toMatchObject({ username: RADIOLOGIST.username });
    await page.close();
  });

  it("a radiologist opens the study from the worklist, changes a grade with the keyboard and signs; Orthanc holds the VERIFIED SR", async () => {
    const results = await h.db.kneeResult.findMany({
      where: { instance: { study: { studyInstanceUid } } },
    });
    expect(results).toHaveLength(2);
    const ai = Object.fromEntries(results.map((r) => [r.laterality, r.klGrade]));
    const page = await logIn(radiologist, RADIOLOGIST);
    const cookie = (await radiologist.cookies()).find((c) => c.name === "kneegrade_session");
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Strict" });
    expect(cookie!.expires).toBeGreaterThan(Date.now() / 1000);

    // Worklist: the study awaits review, with the AI's grade per knee and the test-model flag.
    const started = Date.now();
    await page.goto(`${review!.url}/`);
    const worklistMs = Date.now() - started;
    const row = page.locator("table.worklist tbody tr", { hasText: "Synthetic, Knee" });
    expect(await row.count()).toBe(1);
    const rowText = await row.textContent();
    expect(rowText).toContain(`R KL${ai.RIGHT}`);
    expect(rowText).toContain(`L KL${ai.LEFT}`);
    expect(rowText).toContain("test model");
    expect(rowText).toContain("awaiting review");
    expect(await page.textContent("#counts")).toMatch(/Awaiting review\s*1/);

    // The study page: the radiograph, both knees with crop, heat map, probabilities, AI grade.
    await Promise.all([page.waitForURL(/\/studies\//), row.locator("a").first().click()]);
    await page.waitForLoadState("networkidle");
    const knees = page.locator("section.knee");
    expect(await knees.count()).toBe(2);
    expect(await knees.nth(0).locator("h2").textContent()).toContain(
      `Right knee AI: KL ${ai.RIGHT}`,
    );
    expect(await knees.nth(1).locator("h2").textContent()).toContain(`Left knee AI: KL ${ai.LEFT}`);
    const loaded = (await page.evaluate(
      `[...document.images].map((i) => ({ src: i.getAttribute("src"), w: i.naturalWidth }))`,
    )) as { src: string | null; w: number }[];
    expect(loaded.filter((i) => i.src?.includes("/crop.png")).map((i) => i.w)).toEqual([224, 224]);
    expect(loaded.filter((i) => i.src?.includes("/heatmap.png")).map((i) => i.w)).toEqual([
      224, 224,
    ]);
    const radiograph = loaded.find((i) => i.src?.includes("/instances/"));
    expect(radiograph?.w).toBeGreaterThan(500);
    expect(await page.locator("table.probabilities").count()).toBe(2);
    expect(await page.locator(".banner.test").textContent()).toContain("TEST MODEL");
    expect(await page.inputValue("#findings")).toContain(
      `Right knee: Kellgren–Lawrence grade ${ai.RIGHT}`,
    );
    await page.screenshot({ path: join(SHOTS, "review-study.png"), fullPage: true });

    // Keyboard: confirm the right knee, change the left one, Enter signs.
    const changed = (ai.LEFT! + 2) % 5;
    const signStarted = Date.now();
    await page.keyboard.press(String(ai.RIGHT));
    await page.keyboard.press(String(changed));
    await Promise.all([page.waitForURL(/signed=1/), page.keyboard.press("Enter")]);
    expect(await page.locator("#signed-banner").textContent()).toContain("Doe, Jane");

    // PostgreSQL: the review, each knee's two grades, the audit rows.
    const reviews = await h.db.review.findMany({
      where: { study: { studyInstanceUid } },
      include: { knees: { include: { kneeResult: true } } },
    });
    expect(reviews).toHaveLength(1);
    const signed = reviews[0]!;
    const grades = Object.fromEntries(
      signed.knees.map((k) => [k.kneeResult.laterality, [k.aiGrade, k.radiologistGrade]]),
    );
    expect(grades).toEqual({ RIGHT: [ai.RIGHT, ai.RIGHT], LEFT: [ai.LEFT, changed] });
    expect(signed.findings).toContain(`Left knee: Kellgren–Lawrence grade ${changed}`);
    const audits = await h.db.auditEvent.findMany({
      where: { studyInstanceUid, event: { startsWith: "review." } },
      orderBy: { at: "asc" },
    });
    // Viewed, signed, and viewed again (the page after signing).
    expect(audits.map((a) => a.event)).toEqual([
      "review.study-viewed",
      "review.signed",
      "review.study-viewed",
    ]);
    for (const a of audits)
      expect(a).toMatchObject({ actor: RADIOLOGIST.username, address: "127.0.0.1" });

    // Orthanc: the signed revision beside the AI's unverified SR, delivered by the reporter.
    const signedSr = await srInOrthanc(signed.sopInstanceUid, "the signed SR in Orthanc");
    const signMs = Date.now() - signStarted;
    const { file, dump, errors } = await fetchSr(signedSr.ID, "signed-sr.dcm");
    await writeFile(join(SHOTS, "signed-sr.txt"), dump);
    expect(dump).toMatch(/Verification Flag\s*: VERIFIED/);
    expect(dump).toMatch(/Verifying Observers\s*: [-0-9: +]+, Doe\^Jane, Test Hospital Radiology/);
    expect(dump).toMatch(/Predecessor Docs\s*: 1/);
    const predecessor = (await run("dcmdump", ["+P", "0040,a360", file])).stdout;
    expect(predecessor).toContain(`[${signed.predecessorSopInstanceUid}]`);
    const aiSr = (await findSrs()).find(
      (i) => i.MainDicomTags.SOPInstanceUID === signed.predecessorSopInstanceUid,
    );
    expect(aiSr, "the predecessor is the AI's SR in Orthanc").toBeDefined();
    // Per knee: the AI's group keeps the AI's grade; the radiologist's group carries theirs.
    const groups = dump.split('CONTAINER:(,,"Measurement Group")').slice(1);
    const gradeOf = (label: string) => {
      const g = groups.find((x) => x.includes(`"${label}"`));
      return Number(/<contains CODE:\(,,"Finding"\)=\((?:AI)?KL(\d)/.exec(g ?? "")?.[1]);
    };
    expect(gradeOf("left knee, AI result")).toBe(ai.LEFT);
    expect(gradeOf("left knee, radiologist")).toBe(changed);
    expect(gradeOf("right knee, radiologist")).toBe(ai.RIGHT);
    expect(dump).toMatch(/Person Observer Name"\)="Doe\^Jane"/);
    expect(errors).toEqual([]);
    const report = await h.db.report.findUnique({
      where: { sopInstanceUid: signed.sopInstanceUid },
      include: { deliveries: true },
    });
    expect(report).toMatchObject({ verified: true });
    await waitFor(
      async () =>
        (await h.db.delivery.findFirst({ where: { reportId: report!.id, status: "SENT" } })) ??
        undefined,
      10_000,
      "the delivery recorded as SENT",
    );
    console.log(
      `review timings: worklist page ${worklistMs} ms; Enter → signed SR in Orthanc ${signMs} ms`,
    );
  }, 180_000);

  it("refuses a second signature of the same revision and a form without its CSRF token; an amendment is a new signed revision", async () => {
    const page = await radiologist.newPage();
    // A signed study is read only: its form is signed again only after "Amend".
    await page.goto(`${review!.url}/studies/${studyInstanceUid}`);
    expect(await page.locator("#sign").count()).toBe(0);
    await Promise.all([page.waitForURL(/amend=1/), page.click("#amend")]);
    const form = await signForm(page);
    expect(form.intent).toBe("amend");
    const signed = await h.db.review.findFirstOrThrow({ where: { study: { studyInstanceUid } } });
    expect(form.predecessor).toBe(signed.sopInstanceUid);
    // The page the radiologist signed from (predecessor = the AI's SR), submitted again.
    const again = await post(page, `/studies/${studyInstanceUid}/sign`, {
      ...form,
      predecessor: signed.predecessorSopInstanceUid,
    });
    expect(again.status).toBe(409);
    expect(again.text).toContain("already signed by Doe^Jane");
    // Not gradable needs a reason.
    const knee = Object.keys(form).find((k) => k.startsWith("knee_"))!;
    const noReason = await post(page, `/studies/${studyInstanceUid}/sign`, {
      ...form,
      [knee]: "ng",
      [`reason_${knee.slice(5)}`]: "",
    });
    expect(noReason.status).toBe(400);
    expect(noReason.text).toContain("needs a reason");
    const { _csrf, ...withoutToken } = form;
    expect(_csrf).toBeTruthy();
    const forged = await post(page, `/studies/${studyInstanceUid}/sign`, withoutToken);
    expect(forged.status).toBe(403);
    expect(await h.db.review.count({ where: { study: { studyInstanceUid } } })).toBe(1);

    // An amendment: the current page (predecessor = the signed SR) with edited text.
    const amended = `${form.impression}\nAddendum: compare with the previous study.`;
    const amend = await post(page, `/studies/${studyInstanceUid}/sign`, {
      ...form,
      impression: amended,
    });
    expect(amend.redirected).toBe(true);
    const second = await h.db.review.findFirstOrThrow({
      where: { study: { studyInstanceUid }, sequence: 2 },
    });
    expect(second.predecessorSopInstanceUid).toBe(signed.sopInstanceUid);
    expect(second.impression).toContain("Addendum: compare with the previous study.");
    await srInOrthanc(second.sopInstanceUid, "the amendment in Orthanc");
    expect(await findSrs()).toHaveLength(3);

    // A second amendment with the keyboard: N marks the highlighted (right) knee not gradable and
    // moves to its reason; Enter there ends the reason. The hand-written impression (with its
    // addendum) would still describe the old grade: it is rewritten from the grades, and
    // Ctrl+Enter signs.
    await page.goto(`${review!.url}/studies/${studyInstanceUid}?amend=1`);
    await page.keyboard.press("n");
    await page.keyboard.type("rotated, joint space not assessable");
    await page.keyboard.press("Enter");
    await page.click("#regenerate");
    await expect
      .poll(() => page.inputValue("#findings"))
      .toContain("not gradable (rotated, joint space not assessable)");
    await Promise.all([page.waitForURL(/signed=1/), page.keyboard.press("Control+Enter")]);
    const third = await h.db.review.findFirstOrThrow({
      where: { study: { studyInstanceUid }, sequence: 3 },
      include: { knees: { include: { kneeResult: true } } },
    });
    expect(third.predecessorSopInstanceUid).toBe(second.sopInstanceUid);
    const right = third.knees.find((k) => k.kneeResult.laterality === "RIGHT");
    expect(right).toMatchObject({
      radiologistGrade: null,
      notGradableReason: "rotated, joint space not assessable",
    });
    const thirdSr = await srInOrthanc(third.sopInstanceUid, "the second amendment in Orthanc");
    const keyed = await fetchSr(thirdSr.ID, "amended-sr.dcm");
    expect(keyed.dump).toContain(
      '"Finding")=(NOTGRADABLER,99KNEEGRADE,"Right knee, not gradable (Kellgren-Lawrence)")',
    );
    expect(keyed.dump).toContain("Right knee: not gradable (rotated, joint space not assessable).");
    expect(keyed.dump).toMatch(/Verification Flag\s*: VERIFIED/);
    expect(keyed.errors).toEqual([]);
    expect(await findSrs()).toHaveLength(4);
    await page.close();
  });

  it("a viewer reads but cannot sign (403)", async () => {
    const context = await browser.newContext();
    const page = await logIn(context, VIEWER);
    await page.goto(`${review!.url}/studies/${studyInstanceUid}`);
    expect(await page.locator("section.knee").count()).toBe(2);
    expect(await page.locator("#sign").count()).toBe(0);
    // Not a study UID, or no such study: 404 (never an error page).
    expect((await page.request.get(`${review!.url}/studies/not-a-uid`)).status()).toBe(404);
    expect((await page.request.get(`${review!.url}/studies/1.2.3`)).status()).toBe(404);
    const form = await signForm(page);
    const attempt = await post(page, `/studies/${studyInstanceUid}/sign`, form);
    expect(attempt.status).toBe(403);
    expect(await h.db.review.count({ where: { study: { studyInstanceUid } } })).toBe(3);
    expect(
      await h.db.auditEvent.count({
        where: { event: "review.sign-refused", actor: VIEWER.username, studyInstanceUid },
      }),
    ).toBe(1);
    // An expired session shows the login page again; so does a disabled account's.
    const viewer = await h.db.user.findUniqueOrThrow({ where: { username: VIEWER.username } });
    await h.db.session.updateMany({
      where: { userId: viewer.id },
      data: { expiresAt: new Date(Date.now() - 1000) },
    });
    await page.goto(`${review!.url}/`);
    expect(new URL(page.url()).pathname).toBe("/login");
    const again = await logIn(context, VIEWER);
    expect(new URL(again.url()).pathname).toBe("/");
    await disableUser(h.db, VIEWER.username);
    await again.goto(`${review!.url}/`);
    expect(new URL(again.url()).pathname).toBe("/login");
    await again.fill('input[name="username"]', VIEWER.username);
    await again.fill('input[name="password"]', VIEWER.password);
    await again.click('button[type="submit"]');
    expect(await again.textContent(".error")).toContain("Wrong user name or password");
    await context.close();
  });

  it("counts the signature on the agreement page and in status --json", async () => {
    const page = await radiologist.newPage();
    await page.goto(`${review!.url}/agreement`);
    // The latest signature counts: the right knee not gradable, the left one changed.
    expect(await page.textContent("#knees")).toBe("1");
    expect(await page.textContent("#exact")).toBe("0.0 %");
    // Alert at 90 % from 1 knee (this test's settings): the warning shows.
    expect(await page.textContent("#agreement-warning")).toContain("REVIEW_AGREEMENT_ALERT");
    const matrix = await page.evaluate(
      `document.querySelector('img[src^="/agreement/confusion.png"]').naturalWidth`,
    );
    expect(matrix).toBeGreaterThan(300);
    await page.screenshot({ path: join(SHOTS, "review-agreement.png"), fullPage: true });
    const status = await collectStatus(h.db, h.config);
    // The amendments replaced the first signature: one graded knee, one not gradable.
    expect(status.review).toMatchObject({ awaiting: 0, signed: 1 });
    expect(status.review.agreement).toMatchObject({ knees: 1, notGradable: 1, exact: 0 });
    expect(status.warnings.join("\n")).toContain("Review agreement");
    await page.close();
  });

  it("an admin manages accounts on the users page; others may not", async () => {
    const admin = { username: `admin-${suffix}`, password: "admin password 1234" };
    await addUser(h.db, {
      ...admin,
      displayName: "Admin^Ada",
      organisation: "Test Hospital IT",
      role: "admin",
    });
    const asRadiologist = await radiologist.newPage();
    const refused = await asRadiologist.goto(`${review!.url}/users`);
    expect(refused?.status()).toBe(403);
    await asRadiologist.close();

    const context = await browser.newContext();
    const page = await logIn(context, admin);
    await page.click('nav a[href="/users"]');
    expect(await page.textContent("#users")).toContain(RADIOLOGIST.username);
    const newcomer = { username: `new-${suffix}`, password: "newcomer password 99" };
    const fill = async (password: string) => {
      await page.fill('#add-user input[name="username"]', newcomer.username);
      await page.fill('#add-user input[name="displayName"]', "Newcomer^Nia");
      await page.fill('#add-user input[name="organisation"]', "Test Hospital Radiology");
      await page.selectOption('#add-user select[name="role"]', "radiologist");
      await page.fill('#add-user input[name="password"]', password);
      const [response] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith("/users") && r.request().method() === "POST"),
        page.click('#add-user button[type="submit"]'),
      ]);
      return response.status();
    };
    // The browser's own minlength check is bypassed to see the server refuse a short password.
    await page.evaluate(
      `document.querySelector('#add-user input[name="password"]').removeAttribute("minlength")`,
    );
    expect(await fill("short")).toBe(400);
    expect(await page.textContent(".error")).toContain("at least 12 characters");
    expect(await fill(newcomer.password)).toBe(200);
    expect(await page.textContent(".notice")).toContain(`Added ${newcomer.username}`);
    const theirs = await browser.newContext();
    const worklistPage = await logIn(theirs, newcomer);
    expect(new URL(worklistPage.url()).pathname).toBe("/");
    await theirs.close();
    const row = page.locator("#users tr", { hasText: newcomer.username });
    await row.locator('button[type="submit"]').click();
    await page.waitForLoadState();
    expect(await page.textContent(".notice")).toContain(`Disabled ${newcomer.username}`);
    expect(await h.db.user.findUnique({ where: { username: newcomer.username } })).toMatchObject({
      disabled: true,
      role: "RADIOLOGIST",
    });
    const audits = await h.db.auditEvent.findMany({
      where: { event: { in: ["user.added", "user.disabled"] }, actor: admin.username },
    });
    expect(audits.map((a) => a.event).sort()).toEqual(["user.added", "user.disabled"]);
    await context.close();
  });

  it("kneegrade redeliver queues a signature whose job was lost", async () => {
    const latest = await h.db.review.findFirstOrThrow({
      where: { study: { studyInstanceUid } },
      orderBy: { sequence: "desc" },
      include: { knees: true },
    });
    // A signature recorded while Redis was down: in PostgreSQL, never queued.
    const id = randomUUID();
    const lost = await h.db.review.create({
      data: {
        id,
        studyId: latest.studyId,
        gradingJobId: latest.gradingJobId,
        userId: latest.userId,
        sequence: latest.sequence + 1,
        predecessorSopInstanceUid: latest.sopInstanceUid,
        sopInstanceUid: signedSrUid(id),
        findings: latest.findings,
        impression: latest.impression,
        knees: {
          create: latest.knees.map((k) => ({
            kneeResultId: k.kneeResultId,
            aiGrade: k.aiGrade,
            radiologistGrade: k.radiologistGrade,
            notGradableReason: k.notGradableReason,
          })),
        },
      },
    });
    const r = await redeliver(h.db, h.config, studyInstanceUid);
    expect(r.signatures).toBe(1);
    await srInOrthanc(lost.sopInstanceUid, "the lost signature's SR in Orthanc");
  }, 90_000);

  it("loads the worklist quickly with 1,000 graded studies (measured)", async () => {
    const n = 1000;
    const ids = Array.from({ length: n }, () => ({
      study: randomUUID(),
      series: randomUUID(),
      instance: randomUUID(),
      job: randomUUID(),
    }));
    const at = (i: number) => new Date(Date.now() - (i + 1) * 60_000);
    await h.db.study.createMany({
      data: ids.map((x, i) => ({
        id: x.study,
        studyInstanceUid: newUid(),
        status: "REPORTED" as const,
        patientName: `Load^Patient ${i}`,
        patientId: `LOAD-${i}`,
        studyDate: "20261130",
        lastReceivedAt: at(i),
      })),
    });
    await h.db.series.createMany({
      data: ids.map((x) => ({ id: x.series, seriesInstanceUid: newUid(), studyId: x.study })),
    });
    await h.db.instance.createMany({
      data: ids.map((x) => ({
        id: x.instance,
        sopInstanceUid: newUid(),
        sopClassUid: "1.2.840.10008.5.1.4.1.1.1.1",
        studyId: x.study,
        seriesId: x.series,
        transferSyntaxUid: "1.2.840.10008.1.2.1",
        digest: `blake3:${"0".repeat(64)}`,
        sizeBytes: 1n,
        callingAet: "LOAD",
        revision: 1,
        routing: "KNEE" as const,
        routingReason: "load test",
      })),
    });
    await h.db.gradingJob.createMany({
      data: ids.map((x) => ({
        id: x.job,
        jobId: `load_${x.job}`,
        queue: "grade-study",
        studyId: x.study,
        revision: 1,
        status: "COMPLETED" as const,
        modelVersion: "load",
        modelStatus: "candidate",
      })),
    });
    await h.db.kneeResult.createMany({
      data: ids.flatMap((x, i) =>
        (["RIGHT", "LEFT"] as const).map((laterality, k) => ({
          gradingJobId: x.job,
          instanceId: x.instance,
          laterality,
          klGrade: (i + k) % 5,
          probabilities: [0.2, 0.2, 0.2, 0.2, 0.2],
          lowConfidence: i % 7 === 0,
          modelVersion: "load",
          timingsMs: {},
        })),
      ),
    });
    const page = await radiologist.newPage();
    const times: number[] = [];
    for (const path of ["/", "/", "/?show=all&flagged=1&page=3", "/?show=all&page=20"]) {
      const started = Date.now();
      await page.goto(`${review!.url}${path}`);
      times.push(Date.now() - started);
    }
    expect(await page.locator("table.worklist tbody tr").count()).toBe(50);
    expect(await page.textContent("#counts")).toMatch(/All\s*1001/);
    await page.goto(`${review!.url}/`);
    expect(await page.locator("table.worklist tbody tr").count()).toBe(50);
    expect(await page.textContent(".pager")).toContain("Page 1 of 20");
    // Filters: signed only (the test's study, signed then amended three times), flagged only (low
    // confidence every 7th load-test study, and the test model's study).
    await page.goto(`${review!.url}/?show=signed`);
    const signedRows = await page.locator("table.worklist tbody tr").allTextContents();
    expect(signedRows).toHaveLength(1);
    expect(signedRows[0]).toContain("Synthetic, Knee");
    expect(signedRows[0]).toContain("amended 3×");
    await page.goto(`${review!.url}/?show=all&flagged=1`);
    expect(await page.textContent("#counts")).toMatch(/Flagged only\s*144/);
    expect(await page.textContent(".pager")).toContain("Page 1 of 3");
    // The counts the worklist refreshes while open.
    expect(await page.evaluate(`fetch("/counts.json").then((r) => r.json())`)).toMatchObject({
      all: 1001,
    });
    console.log(`worklist with ${n + 1} graded studies: page loads ${times.join(", ")} ms`);
    expect(Math.max(...times.slice(1))).toBeLessThan(3000);
    await page.close();
  }, 120_000);

  it("kneegrade serve --only review, over HTTPS: Secure cookies, and no patient data in its log", async () => {
    const port = await freePort();
    const { key, cert } = selfSignedCert(work);
    const served = await startServe(
      {
        ...configEnv(h.config),
        REVIEW_PORT: String(port),
        REVIEW_TLS_CERT: cert,
        REVIEW_TLS_KEY: key,
        REVIEW_SESSION_SECRET: "a".repeat(40),
        LISTENER_PORT: "0",
        LOG_LEVEL: "debug",
      },
      ["--only", "review"],
    );
    try {
      expect(served.output()).toContain(`"url":"https://127.0.0.1:${port}"`);
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      const page = await context.newPage();
      await page.goto(`https://127.0.0.1:${port}/`);
      const headers = (await page.request.get(`https://127.0.0.1:${port}/login`)).headers();
      expect(headers["strict-transport-security"]).toBeDefined();
      expect(headers["content-security-policy"]).toContain("script-src 'self'");
      await page.fill('input[name="username"]', RADIOLOGIST.username);
      await page.fill('input[name="password"]', RADIOLOGIST.password);
      await Promise.all([page.waitForURL(/\/(\?.*)?$/), page.click('button[type="submit"]')]);
      // Under TLS the session cookie carries the __Host- prefix (only this origin can set it);
      // the login form's nonce cookie ended with the login.
      const cookies = await context.cookies();
      expect(cookies.map((c) => c.name)).toEqual(["__Host-kneegrade_session"]);
      expect(cookies[0]).toMatchObject({
        secure: true,
        httpOnly: true,
        sameSite: "Strict",
        path: "/",
      });
      await page.goto(`https://127.0.0.1:${port}/studies/${studyInstanceUid}`);
      expect(await page.locator("section.knee").count()).toBe(2);
      await context.close();
      await new Promise((r) => setTimeout(r, 500));
      // The pages showed the patient; the log (debug level) names none of it.
      expect(served.output()).toContain('"event":"review.started"');
      expect(served.output()).not.toMatch(/Synthetic|SYNTH-KNEE|SYNTH0001|Knee\^/);
    } finally {
      await kill(served.child, "SIGTERM");
    }
  }, 60_000);

  it("limits login attempts per address (429)", async () => {
    // A fresh app (its own in-memory limiter) allowing 3 attempts a minute.
    const app = await buildReviewApp({
      db: h.db,
      config: { ...h.config, REVIEW_LOGIN_ATTEMPTS_PER_MINUTE: 3 },
      log: quiet,
      reportQueue: { add: async () => undefined },
    });
    const attempt = async (remoteAddress: string) =>
      (
        await app.inject({
          method: "POST",
          url: "/login",
          payload: "username=nobody&password=x",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          remoteAddress,
        })
      ).statusCode;
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push(await attempt("192.0.2.7"));
    // No CSRF token: refused (403) until the limit answers 429 before anything else runs.
    expect(statuses).toEqual([403, 403, 403, 429, 429]);
    // Another address has its own attempts.
    expect(await attempt("192.0.2.8")).toBe(403);
    await app.close();
  });
});
