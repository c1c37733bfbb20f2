/**
 * The review pages as a radiologist uses them at speed, in real headless Chromium (Debian's
 * package, through playwright-core), on the real app, PostgreSQL and Redis: every knee the
 * radiograph shows is accounted for (a knee the AI did not grade needs a decision, and the signed
 * SR says it), keys act only when the study has focus, a signed study changes only through
 * "Amend" and never by an unchanged amendment, arrows never change a grade, and the report text
 * on screen follows the grades and is what is signed, with the panel in view on common screens.
 * Graded studies are rows written as the worker writes them, with a real spooled radiograph.
 */
import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Db } from "@kneegrade/db";
import { reportUids, SR_SOP_CLASSES } from "@kneegrade/dicom-writers";
import { createLogger } from "@kneegrade/log";
import { writeSignedReport } from "@kneegrade/report-jobs";
import { addUser } from "@kneegrade/review-data";
import { composeBilateral, radiographDicom } from "@kneegrade/sample-radiographs";
import type { Queue } from "bullmq";
import type { FastifyInstance } from "fastify";
import { type Browser, chromium, type Page } from "playwright-core";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupConfig, type testConfig } from "../helpers/env.ts";
import { completedGradingJob, gradedKnee, recordedInstance } from "../helpers/graded.ts";
import { REPO_ROOT, SHARED_DATA } from "../helpers/paths.ts";
import { startReviewApp } from "../helpers/review-app.ts";
import { newUid } from "../helpers/studies.ts";

const run = promisify(execFile);
const quiet = createLogger("test", "silent");
const SHOTS = join(REPO_ROOT, "var", "screenshots");
const VAL = `${SHARED_DATA}knee-kl/val/`;
const sfx = Math.random().toString(36).slice(2, 8);
const RAD = { username: `kbd-${sfx}`, password: "copper lantern meadow 4096" };
const VERIFIER_WARNING =
  "a second knee-like region was not taken for a knee by the verifier: one knee graded";

type Side = "RIGHT" | "LEFT";
interface Fixture {
  uid: string;
  jobId: string;
  instanceId: string;
  kneeIds: string[];
}

describe("review pages in Chromium: every knee accounted for, safe keys, what you see is what you sign", () => {
  let config: Awaited<ReturnType<typeof testConfig>>;
  let db: Db;
  let app: FastifyInstance;
  let queue: Queue;
  let browser: Browser;
  let base: string;
  let spoolFile: string;
  let crops: Buffer[];
  let patients = 0;

  /** A graded study as the worker records it: one bilateral instance, the AI's knees, warnings. */
  async function gradedStudy(o: {
    knees: [Side, number][];
    warnings?: string[];
    receivedAt?: Date;
    patientId?: string;
    studyDate?: string;
  }): Promise<Fixture> {
    const uid = newUid();
    const n = ++patients;
    const study = await db.study.create({
      data: {
        studyInstanceUid: uid,
        status: "REPORTED",
        patientName: `Keyboard^Patient${n}`,
        patientId: o.patientId ?? `KBD-${sfx}-${n}`,
        studyDate: o.studyDate ?? "20261127",
        accessionNumber: `ACC-${n}`,
        lastReceivedAt: o.receivedAt ?? new Date(),
      },
    });
    const instance = await recordedInstance(db, study.id, {
      spoolPath: spoolFile,
      imageLaterality: "B",
    });
    const job = await completedGradingJob(db, study.id, "kbd");
    await db.instanceGrading.create({
      data: {
        gradingJobId: job.id,
        instanceId: instance.id,
        outcome: "GRADED",
        warnings: o.warnings ?? [],
        kneesFound: o.knees.length,
        timingsMs: {},
      },
    });
    const kneeIds: string[] = [];
    for (const [i, [laterality, klGrade]] of o.knees.entries()) {
      const at = { gradingJobId: job.id, instanceId: instance.id };
      const k = await gradedKnee(db, at, laterality, klGrade, {
        lateralitySource: "ImageLaterality B and PatientOrientation",
        // The composed image: the patient's right knee on the image's left.
        region:
          laterality === "RIGHT"
            ? { x: 333, y: 700, width: 600, height: 600 }
            : { x: 1467, y: 700, width: 600, height: 600 },
        cropPng: new Uint8Array(crops[i % crops.length]!),
      });
      kneeIds.push(k.id);
    }
    return { uid, jobId: job.id, instanceId: instance.id, kneeIds };
  }

  async function logIn(viewport = { width: 1440, height: 900 }): Promise<Page> {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    await page.goto(`${base}/login`);
    await page.fill('input[name="username"]', RAD.username);
    await page.fill('input[name="password"]', RAD.password);
    await Promise.all([page.waitForURL(/\/(\?.*)?$/), page.click('button[type="submit"]')]);
    return page;
  }
  const openStudy = async (page: Page, uid: string, query = "") => {
    await page.goto(`${base}/studies/${uid}${query}`);
    await page.waitForLoadState("networkidle");
  };
  /** Both knees graded by the AI: the right `right`, the left `left`. */
  const bilateral = (right: number, left: number) => ({
    knees: [
      ["RIGHT", right],
      ["LEFT", left],
    ] as [Side, number][],
  });
  /** A graded study open in a logged-in page; with `heatmap`, its first knee has a heat map. */
  async function openGraded(o: Parameters<typeof gradedStudy>[0], heatmap = false) {
    const f = await gradedStudy(o);
    if (heatmap) {
      await db.kneeResult.update({
        where: { id: f.kneeIds[0]! },
        data: { heatmapPng: new Uint8Array(crops[1]!) },
      });
    }
    const page = await logIn();
    await openStudy(page, f.uid);
    return { f, page };
  }
  const checked = (page: Page) =>
    page.evaluate(
      `Object.fromEntries([...document.querySelectorAll("#sign-form input[type=radio]:checked")].map((r) => [r.name, r.value]))`,
    ) as Promise<Record<string, string>>;
  const reviewsOf = (f: Fixture) =>
    db.review.findMany({
      where: { gradingJobId: f.jobId },
      include: { knees: true, missingKnees: true },
      orderBy: { sequence: "asc" },
    });
  /** Whether the element lies wholly inside the viewport. */
  const inView = (page: Page, selector: string) =>
    page.evaluate(`(() => {
      const r = document.querySelector(${JSON.stringify(selector)}).getBoundingClientRect();
      return r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth;
    })()`) as Promise<boolean>;
  /** Waits until the findings on screen say this (the text follows the grades). */
  const findingsShow = (page: Page, text: string) =>
    expect.poll(() => page.inputValue("#findings"), { timeout: 15_000 }).toContain(text);

  beforeAll(async () => {
    await mkdir(SHOTS, { recursive: true });
    ({ config, db, queue, app } = await startReviewApp({
      REVIEW_LOGIN_ATTEMPTS_PER_MINUTE: "50",
      REVIEW_VIEWER_URL: "https://pacs.example/viewer?StudyInstanceUIDs={StudyInstanceUID}",
    }));
    await app.listen({ port: 0, host: "127.0.0.1" });
    const address = app.server.address() as { port: number };
    base = `http://127.0.0.1:${address.port}`;
    await addUser(db, {
      ...RAD,
      displayName: "Key^Kate",
      organisation: "Test Hospital Radiology",
      role: "radiologist",
    });
    const pngs = [`${VAL}1/9003380R.png`, `${VAL}3/9107980R.png`] as const;
    spoolFile = join(config.SPOOL_DIR, "bilateral.dcm");
    await writeFile(spoolFile, radiographDicom(await composeBilateral(pngs)));
    crops = await Promise.all(pngs.map((p) => readFile(p)));
    browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      args: ["--no-sandbox"],
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await queue?.close();
    await db?.$disconnect();
    if (config) await cleanupConfig(config);
  });

  it("a knee the AI did not take gets a card, a worklist flag, a required decision, and its line in the signed SR", async () => {
    // The demo's second study: the left knee graded KL4, the right one refused by the verifier.
    const f = await gradedStudy({ knees: [["LEFT", 4]], warnings: [VERIFIER_WARNING] });
    const page = await logIn();
    const row = page.locator("table.worklist tbody tr", { hasText: "ACC-1" });
    expect(await row.textContent()).toContain("knee not graded by AI");

    await openStudy(page, f.uid);
    const cards = page.locator("section.knee");
    expect(await cards.count()).toBe(2);
    const missing = page.locator("section.knee.missing");
    expect(await missing.locator("h2").textContent()).toContain(
      "Right knee — not graded by the AI: a second knee-like region was not taken for a knee",
    );
    expect(await page.inputValue("#findings")).toContain(
      "Right knee — not graded by the AI (a second knee-like region was not taken for a knee by the AI's verifier); radiologist's decision required.",
    );

    // Accepting the AI's grade alone does not sign: the right knee needs a decision.
    await page.keyboard.press("4");
    await Promise.all([page.waitForURL(/\/sign$/), page.keyboard.press("Enter")]);
    expect(await page.textContent(".error")).toContain(
      "Right knee — not graded by the AI (a second knee-like region was not taken for a knee by the AI's verifier): choose a grade (0–4), 'not gradable' or 'not present'",
    );
    expect(await reviewsOf(f)).toHaveLength(0);

    // The radiologist grades the right knee KL2 with the keys; the text follows before signing.
    await openStudy(page, f.uid);
    await page.keyboard.press("4");
    await page.keyboard.press("2");
    const line =
      "Right knee — not graded by the AI (a second knee-like region was not taken for a knee by the AI's verifier); radiologist: Kellgren–Lawrence grade 2 (minimal osteoarthritis).";
    await findingsShow(page, line);
    const shown = await page.inputValue("#findings");
    await Promise.all([page.waitForURL(/signed=1|previous=/), page.keyboard.press("Enter")]);
    const [review] = await reviewsOf(f);
    expect(review?.findings).toBe(shown);
    expect(review?.missingKnees).toEqual([
      expect.objectContaining({
        laterality: "RIGHT",
        aiCode: "NOT_VERIFIED",
        decision: "GRADED",
        radiologistGrade: 2,
      }),
    ]);
    expect(review?.knees.map((k) => [k.aiGrade, k.radiologistGrade])).toEqual([[4, 4]]);

    // The signed SR (written as the reporter writes it) carries the decision in its findings.
    await db.report.create({
      data: {
        studyId: (await db.study.findUniqueOrThrow({ where: { studyInstanceUid: f.uid } })).id,
        gradingJobId: f.jobId,
        sopInstanceUid: reportUids(f.jobId).aiSr,
        seriesInstanceUid: reportUids(f.jobId).aiSrSeries,
        sopClassUid: SR_SOP_CLASSES.comprehensive,
        path: join(config.SPOOL_DIR, "ai-sr.dcm"),
        sha256: "0".repeat(64),
      },
    });
    await writeSignedReport(
      db,
      review!.id,
      { ...config, pacs: { calledAet: "PACS", host: "127.0.0.1", port: 1 } },
      quiet,
    );
    const written = await db.report.findUniqueOrThrow({
      where: { sopInstanceUid: review!.sopInstanceUid },
    });
    const dump = (await run("dsrdump", ["-Ee", "+Pl", "+U8", written.path])).stdout;
    expect(dump).toMatch(/Verification Flag\s*: VERIFIED/);
    expect(dump).toContain("Right knee — not graded by the AI");
    expect(dump).toContain("radiologist: Kellgren–Lawrence grade 2");
    await page.context().close();
  });

  it("'not present' and 'not gradable' are decisions too; an arthroplasty gets its card", async () => {
    const f = await gradedStudy({ knees: [["RIGHT", 1]] });
    await db.instanceGrading.updateMany({
      where: { gradingJobId: f.jobId },
      data: {
        kneesFound: 2,
        notGraded: [
          { laterality: "LEFT", code: "ARTHROPLASTY", reason: "knee arthroplasty — not graded" },
        ],
      },
    });
    const page = await logIn();
    await openStudy(page, f.uid);
    expect(await page.locator("section.knee.missing h2").textContent()).toContain(
      "Left knee — not graded by the AI: knee arthroplasty — not graded",
    );
    await page.keyboard.press("1");
    await page.keyboard.press("n");
    await page.keyboard.type("total knee replacement");
    await page.keyboard.press("Enter"); // ends the reason: back to the knee, nothing signed
    expect(await reviewsOf(f)).toHaveLength(0);
    await findingsShow(page, "radiologist: not gradable (total knee replacement)");
    await Promise.all([page.waitForURL(/signed=1|previous=/), page.keyboard.press("Enter")]);
    const [review] = await reviewsOf(f);
    expect(review?.missingKnees[0]).toMatchObject({
      laterality: "LEFT",
      aiCode: "ARTHROPLASTY",
      decision: "NOT_GRADABLE",
      notGradableReason: "total knee replacement",
    });

    // One knee of a bilateral view, no warning: "not present" (P) is the decision.
    const g = await gradedStudy({ knees: [["LEFT", 0]] });
    await openStudy(page, g.uid);
    expect(await page.locator("section.knee.missing h2").textContent()).toContain(
      "Right knee — not graded by the AI: the view shows both knees",
    );
    await page.keyboard.press("0");
    await page.keyboard.press("p");
    await findingsShow(page, "radiologist: not present on the image");
    await Promise.all([page.waitForURL(/signed=1|previous=/), page.keyboard.press("Enter")]);
    expect((await reviewsOf(g))[0]?.missingKnees[0]).toMatchObject({ decision: "NOT_PRESENT" });
    await page.context().close();
  });

  it("Enter on a focused link follows the link and signs nothing; keys on it change no grade", async () => {
    const { f, page } = await openGraded(bilateral(3, 2));
    const before = await checked(page);
    await page.keyboard.press("Tab");
    expect(await page.evaluate("document.activeElement.textContent")).toBe("Worklist");
    await page.keyboard.press("Enter");
    await page.waitForTimeout(1000);
    expect(await reviewsOf(f)).toHaveLength(0);
    expect(page.url()).toBe(`${base}/`);
    // A grade key on a focused link changes no grade either.
    await openStudy(page, f.uid);
    await page.keyboard.press("Tab");
    await page.keyboard.press("1");
    expect(await checked(page)).toEqual(before);
    // Nor in a text field: Enter there does not submit the form.
    await openStudy(page, f.uid);
    await page.focus("#findings");
    await page.keyboard.press("Enter");
    await page.waitForTimeout(300);
    expect(new URL(page.url()).pathname).toBe(`/studies/${f.uid}`);
    expect(await reviewsOf(f)).toHaveLength(0);
    await page.context().close();
  });

  it("a second Enter makes no amendment; a signed study changes only through Amend, never unchanged", async () => {
    const f = await gradedStudy(bilateral(3, 2));
    // Another study awaiting review: "sign & next" opens it.
    const next = await gradedStudy({
      knees: [
        ["RIGHT", 1],
        ["LEFT", 1],
      ],
      receivedAt: new Date(Date.now() + 60_000),
    });
    const page = await logIn();
    await openStudy(page, f.uid);
    await Promise.all([page.waitForURL(/signed=1|previous=/), page.keyboard.press("Enter")]);
    // A second Enter, early or late, makes no second signature of anything.
    await page.keyboard.press("Enter");
    await page.waitForTimeout(1500);
    await page.keyboard.press("Enter");
    await page.waitForTimeout(1500);
    expect(await reviewsOf(f)).toHaveLength(1);
    expect(await reviewsOf(next)).toHaveLength(0);
    // "Sign & next" opened the next study awaiting review.
    expect(new URL(page.url()).pathname).toBe(`/studies/${next.uid}`);

    // Back to the signed study: read only; Enter and grade keys do nothing.
    expect(await page.getAttribute("#back", "href")).toBe(`/studies/${f.uid}`);
    await openStudy(page, f.uid);
    expect(await page.locator("#sign").count()).toBe(0);
    const before = await checked(page);
    await page.keyboard.press("1");
    await page.keyboard.press("Enter");
    await page.waitForTimeout(300);
    expect(await checked(page)).toEqual(before);
    expect(await reviewsOf(f)).toHaveLength(1);

    // Amend, unchanged: refused by the server.
    await Promise.all([page.waitForURL(/amend=1/), page.click("#amend")]);
    await Promise.all([page.waitForURL(/\/sign$/), page.keyboard.press("Enter")]);
    expect(await page.textContent(".error")).toContain("nothing changed");
    expect(await reviewsOf(f)).toHaveLength(1);
    // The old page's form (no "Amend") is refused too.
    await openStudy(page, f.uid, "?amend=1");
    const form = (await page.evaluate(
      `Object.fromEntries([...new FormData(document.getElementById("sign-form")).entries()])`,
    )) as Record<string, string>;
    const { intent: _intent, ...withoutIntent } = form;
    const status = await page.evaluate(
      async ({ url, body }) =>
        (await fetch(url, { method: "POST", body: new URLSearchParams(body), redirect: "manual" }))
          .status,
      { url: `/studies/${f.uid}/sign`, body: withoutIntent },
    );
    expect(status).toBe(409);
    // A real amendment: a changed grade.
    await openStudy(page, f.uid, "?amend=1");
    await page.keyboard.press("4");
    await findingsShow(page, "Right knee: Kellgren–Lawrence grade 4");
    await Promise.all([page.waitForURL(/signed=1|previous=/), page.keyboard.press("Enter")]);
    expect((await reviewsOf(f)).map((r) => r.sequence)).toEqual([1, 2]);
    await page.context().close();
  });

  it("arrow keys move between knees and never change a grade", async () => {
    const { f, page } = await openGraded(bilateral(4, 2));
    const before = await checked(page);
    await page.focus(`input[name="knee_${f.kneeIds[0]}"][value="4"]`);
    for (const key of ["ArrowDown", "ArrowRight", "ArrowUp", "ArrowLeft", "ArrowLeft"]) {
      await page.keyboard.press(key);
      expect(await checked(page), key).toEqual(before);
    }
    await page.focus(`input[name="knee_${f.kneeIds[0]}"][value="4"]`);
    await page.keyboard.press("ArrowDown");
    expect(await page.getAttribute("section.knee.current", "id")).toBe("knee-1");
    await page.keyboard.press("ArrowUp");
    expect(await page.getAttribute("section.knee.current", "id")).toBe("knee-0");
    expect(await checked(page)).toEqual(before);
    expect(await reviewsOf(f)).toHaveLength(0);
    await page.context().close();
  });

  it("findings and impression follow the grades, the panel stays in view, and the signed text is the text shown", async () => {
    const { f, page } = await openGraded(bilateral(2, 3));
    const aiText = await page.inputValue("#findings");
    expect(aiText).toContain("Right knee: Kellgren–Lawrence grade 2");
    await page.keyboard.press("1");
    await findingsShow(page, "Right knee: Kellgren–Lawrence grade 1");
    expect(await page.textContent("#knee-0 [data-you]")).toBe("you: KL1 / AI: KL2");
    expect(await page.textContent("#grade-summary")).toContain("KL1");
    expect(await page.inputValue("#impression")).toContain("grade 1");

    // The page's AI text with other grades (a page not updated) is refused, not rewritten.
    const form = (await page.evaluate(
      `Object.fromEntries([...new FormData(document.getElementById("sign-form")).entries()])`,
    )) as Record<string, string>;
    const stale = await page.evaluate(
      async ({ url, body }) => {
        const r = await fetch(url, {
          method: "POST",
          body: new URLSearchParams(body),
          redirect: "manual",
        });
        return { status: r.status, text: await r.text() };
      },
      { url: `/studies/${f.uid}/sign`, body: { ...form, findings: aiText } },
    );
    expect(stale.status).toBe(409);
    expect(stale.text).toContain("describe other grades");
    expect(await reviewsOf(f)).toHaveLength(0);

    const shown = {
      findings: await page.inputValue("#findings"),
      impression: await page.inputValue("#impression"),
    };
    await Promise.all([page.waitForURL(/signed=1|previous=/), page.keyboard.press("Enter")]);
    const [review] = await reviewsOf(f);
    expect({ findings: review?.findings, impression: review?.impression }).toEqual(shown);
    expect(review?.knees.find((k) => k.aiGrade === 2)?.radiologistGrade).toBe(1);
    await page.context().close();

    // Sign is not below the fold: the panel (grades, text, Sign) stays in view on common screens
    // (shown with the demo's study that has a knee the AI did not take: three cards' worth).
    const g = await gradedStudy({ knees: [["LEFT", 4]], warnings: [VERIFIER_WARNING] });
    for (const viewport of [
      { width: 1440, height: 900 },
      { width: 1920, height: 1080 },
    ]) {
      const page = await logIn(viewport);
      await openStudy(page, g.uid);
      for (const s of ["#sign", "#findings", "#impression", "#grade-summary"]) {
        expect(await inView(page, s), `${s} at ${viewport.width}`).toBe(true);
      }
      await page.screenshot({ path: join(SHOTS, `review-study-${viewport.width}.png`) });
      // Measured, not asserted (the machine is shared): the page with all its pictures, reloaded
      // five times; the page is sent again each time, the pictures are revalidated.
      const times: number[] = [];
      for (let n = 0; n < 5; n++) {
        const started = Date.now();
        await page.reload({ waitUntil: "load" });
        times.push(Date.now() - started);
      }
      const median = [...times].sort((a, b) => a - b)[2];
      console.log(
        `study page at ${viewport.width}: loaded in ${times.join(", ")} ms (median ${median})`,
      );
      await page.evaluate("window.scrollTo(0, document.body.scrollHeight)");
      for (const s of ["#sign", "#findings", "#grade-summary"]) {
        expect(await inView(page, s), `${s} at ${viewport.width}, scrolled`).toBe(true);
      }
      await page.context().close();
    }
  });

  it("worklist and polish: final grades and signer, flagged counts per tab, favicon, logged-out message, user name kept", async () => {
    const page = await logIn();
    await page.goto(`${base}/?show=signed`);
    const signedRow = page.locator("table.worklist tbody tr", { hasText: "ACC-1" });
    const text = await signedRow.textContent();
    expect(text).toContain("L KL4");
    expect(text).toContain("R KL2");
    expect(text).toContain("Key, Kate");
    // Shown in the browser's zone, not as a UTC ISO string.
    expect(await signedRow.locator("time").last().textContent()).not.toContain("UTC");
    // "Flagged only" counts what the current tab shows: the signed flagged studies (missing
    // knees) count under "All", not under "Awaiting review".
    const flaggedCount = async (show: string) => {
      await page.goto(`${base}/?show=${show}`);
      const count = Number(await page.textContent('[data-count="flagged"]'));
      await page.goto(`${base}/?show=${show}&flagged=1`);
      const rows = await page.locator("table.worklist tbody tr[data-href]").count();
      return { count, rows };
    };
    const awaiting = await flaggedCount("awaiting");
    const all = await flaggedCount("all");
    expect(awaiting.count).toBe(awaiting.rows);
    expect(all.count).toBe(all.rows);
    expect(all.count).toBeGreaterThan(awaiting.count);
    // Keyboard on the worklist: j moves to the first row, Enter opens it.
    await page.goto(`${base}/?show=awaiting`);
    const first = await page.getAttribute("table.worklist tbody tr[data-href]", "data-href");
    await page.keyboard.press("j");
    await Promise.all([page.waitForURL(`${base}${first}`), page.keyboard.press("Enter")]);
    const favicon = await page.request.get(`${base}/favicon.ico`);
    expect(favicon.status()).toBe(200);
    expect(favicon.headers()["content-type"]).toContain("image/svg+xml");
    // The agreement chart in the page's dark theme (not a white panel).
    const chart = await page.request.get(`${base}/agreement/confusion.png`);
    const { data, info } = await sharp(await chart.body())
      .raw()
      .toBuffer({ resolveWithObject: true });
    expect([data[0], data[1], data[2]]).toEqual([28, 28, 28]);
    expect(info.width).toBeGreaterThan(300);
    // Logging out says so; a failed login keeps the user name.
    await Promise.all([page.waitForURL(/\/login/), page.click("nav button")]);
    expect(await page.textContent("#login-notice")).toContain("logged out");
    await page.fill('input[name="username"]', RAD.username);
    await page.fill('input[name="password"]', "wrong password");
    await Promise.all([page.waitForLoadState(), page.click('button[type="submit"]')]);
    await page.waitForSelector(".error");
    expect(await page.inputValue('input[name="username"]')).toBe(RAD.username);
    await page.context().close();
  });
  it("image tools: heat map legend and toggle, the site's viewer, zoom to full resolution, window/level on the original pixels, a knee enlarged", async () => {
    const { f, page } = await openGraded(bilateral(1, 2), true);
    // The heat map has its legend and can be switched off (the plain crop) and on again.
    const heat = page.locator("figure.heat img");
    expect(await page.textContent("figure.heat .legend")).toMatch(/less\s*more attention/);
    await page.click("button[data-heat-toggle]");
    expect(await heat.getAttribute("src")).toBe(`/knees/${f.kneeIds[0]}/crop.png`);
    await page.click("button[data-heat-toggle]");
    expect(await heat.getAttribute("src")).toBe(`/knees/${f.kneeIds[0]}/heatmap.png`);
    expect(await page.getAttribute("#viewer-link", "href")).toBe(
      `https://pacs.example/viewer?StudyInstanceUIDs=${f.uid}`,
    );
    const radiograph = page.locator("img.radiograph");
    const natural = () => radiograph.evaluate((i: { naturalWidth: number }) => i.naturalWidth);
    // Fitted: at most 1,200 px sent; zoomed: the original 2,400 px, wider than its column.
    expect(await natural()).toBe(1200);
    await page.click('button[data-zoom="in"]');
    await expect.poll(natural, { timeout: 20_000 }).toBe(2400);
    await page.click('button[data-zoom="in"]');
    const box = await page.locator("[data-viewer]").boundingBox();
    expect(
      await radiograph.evaluate(
        (i: { getBoundingClientRect(): { width: number } }) => i.getBoundingClientRect().width,
      ),
    ).toBeGreaterThan(box!.width);
    // Drag pans the zoomed image.
    await page.mouse.move(box!.x + box!.width / 2, box!.y + box!.height / 2);
    await page.mouse.down();
    await page.mouse.move(box!.x + 20, box!.y + 20, { steps: 5 });
    await page.mouse.up();
    expect(
      await page
        .locator("[data-viewer]")
        .evaluate((v: { scrollLeft: number; scrollTop: number }) => v.scrollLeft + v.scrollTop),
    ).toBeGreaterThan(0);
    await page.click('button[data-zoom="fit"]');
    await expect.poll(natural, { timeout: 20_000 }).toBe(1200);
    // A narrow window on the 12-bit values renders different pixels from the image's own VOI.
    await page.fill("input.ww", "400");
    await page.fill("input.wc", "1000");
    await page.click('button[data-window="apply"]');
    await expect
      .poll(() => radiograph.getAttribute("src"), { timeout: 20_000 })
      .toContain("wc=1000&ww=400");
    const own = await page.request.get(`${base}${await radiograph.getAttribute("data-base")}`);
    const windowed = await page.request.get(`${base}${await radiograph.getAttribute("src")}`);
    expect(windowed.status()).toBe(200);
    const mean = async (r: typeof own) => (await sharp(await r.body()).stats()).channels[0]!.mean;
    expect(Math.abs((await mean(windowed)) - (await mean(own)))).toBeGreaterThan(5);
    // Keys typed into the tools change no grade.
    const before = await checked(page);
    await page.focus("input.ww");
    await page.keyboard.press("3");
    expect(await checked(page)).toEqual(before);
    // The knee's region from the original pixels at 512 px.
    await page.click(`button[data-enlarge="${f.kneeIds[0]}"]`);
    const region = page.locator(`#region-${f.kneeIds[0]} img`);
    await expect
      .poll(() => region.evaluate((i: { naturalWidth: number }) => i.naturalWidth), {
        timeout: 20_000,
      })
      .toBe(512);
    expect(
      await region.evaluate(
        (i: { getBoundingClientRect(): { width: number } }) => i.getBoundingClientRect().width,
      ),
    ).toBeGreaterThanOrEqual(512);
    await region.click();
    expect(await page.locator(`#region-${f.kneeIds[0]}`).isHidden()).toBe(true);
    await page.context().close();
  });
  it("priors: earlier studies of the patient with their final grades, and the prior crop beside the current one", async () => {
    const patientId = `PRIOR-${sfx}`;
    const older = await gradedStudy({
      knees: [
        ["RIGHT", 1],
        ["LEFT", 2],
      ],
      patientId,
      studyDate: "20250110",
    });
    const current = await gradedStudy({
      knees: [
        ["RIGHT", 2],
        ["LEFT", 3],
      ],
      patientId,
      studyDate: "20261127",
    });
    // The older study was signed: the right knee changed to KL0, the left kept.
    const user = await db.user.findUniqueOrThrow({ where: { username: RAD.username } });
    const olderStudy = await db.study.findUniqueOrThrow({ where: { studyInstanceUid: older.uid } });
    await db.review.create({
      data: {
        studyId: olderStudy.id,
        gradingJobId: older.jobId,
        userId: user.id,
        sequence: 1,
        predecessorSopInstanceUid: reportUids(older.jobId).aiSr,
        sopInstanceUid: newUid(),
        findings: "Right knee: grade 0.",
        impression: "None.",
        knees: {
          create: [
            { kneeResultId: older.kneeIds[0]!, aiGrade: 1, radiologistGrade: 0 },
            { kneeResultId: older.kneeIds[1]!, aiGrade: 2, radiologistGrade: 2 },
          ],
        },
      },
    });
    const page = await logIn();
    await openStudy(page, current.uid);
    const priors = await page.textContent("#priors");
    expect(priors).toContain("2025-01-10");
    expect(priors).toContain("R KL0");
    expect(priors).toContain("L KL2");
    expect(priors).toContain("signed by Key, Kate");
    const right = page.locator("#knee-0 figure.prior");
    expect(await right.locator("img").getAttribute("src")).toBe(
      `/knees/${older.kneeIds[0]}/crop.png`,
    );
    expect(await right.textContent()).toContain("prior 2025-01-10: KL0");
    // The older study has no prior of its own: the newer one is not its prior.
    await openStudy(page, older.uid);
    expect(await page.locator("#priors").count()).toBe(0);
    await page.context().close();
  });
  it("overlay: each knee's region and label lie on the radiograph at any zoom, and the label follows the grade", async () => {
    const { page } = await openGraded(bilateral(2, 3));
    const label = (i: number) => page.textContent(`svg.regions [data-region="${i}"] text`);
    expect(await label(0)).toBe("R · AI KL2");
    expect(await label(1)).toBe("L · AI KL3");
    /** The right knee's region on screen, as a fraction of the picture on screen. */
    const placed = () =>
      page.evaluate(`(() => {
        const img = document.querySelector("img.radiograph").getBoundingClientRect();
        const r = document.querySelector('svg.regions [data-region="0"] rect').getBoundingClientRect();
        return [(r.left - img.left) / img.width, (r.top - img.top) / img.height, r.width / img.width];
      })()`) as Promise<number[]>;
    const size = (await page.evaluate(
      `(() => { const s = document.querySelector("svg.regions"); return [Number(s.dataset.width), Number(s.dataset.height)]; })()`,
    )) as number[];
    // The fixture's right knee: x 333, y 700, 600 px wide, in the original 2,400-px image.
    expect(size[0]).toBe(2400);
    const want = [333 / size[0]!, 700 / size[1]!, 600 / size[0]!];
    const near = (got: number[]) => got.every((v, i) => Math.abs(v - want[i]!) < 0.005);
    expect(near(await placed()), String(await placed())).toBe(true);
    // Zoomed to the full resolution, the region stays on the knee.
    await page.click('button[data-zoom="in"]');
    await page.click('button[data-zoom="in"]');
    await expect.poll(async () => near(await placed()), { timeout: 20_000 }).toBe(true);
    await page.click('button[data-zoom="fit"]');
    // The label follows the grade on the page, and back.
    await page.focus("#knee-0");
    await page.keyboard.press("1");
    expect(await label(0)).toBe("R · you KL1 · AI KL2");
    await page.keyboard.press("n");
    expect(await label(1)).toBe("L · you n/g · AI KL3");
    await page.click('#knee-0 input[value="2"]');
    expect(await label(0)).toBe("R · AI KL2");
    // The picture itself carries no label (it would contradict a changed grade): no yellow in it.
    const jpeg = await page.request.get(
      `${base}${await page.locator("img.radiograph").getAttribute("data-base")}`,
    );
    const { data, info } = await sharp(await jpeg.body())
      .toColourspace("srgb")
      .raw()
      .toBuffer({ resolveWithObject: true });
    let coloured = 0;
    for (let p = 0; p < data.length; p += info.channels) {
      if (data[p]! - data[p + 2]! > 60) coloured++; // yellow: red well above blue
    }
    expect(coloured).toBe(0);
    await page.context().close();
  });

  it("refused images: listed with their reason beside the graded ones; a study of only refused images says so", async () => {
    const f = await gradedStudy(bilateral(1, 2));
    const study = await db.study.findUniqueOrThrow({ where: { studyInstanceUid: f.uid } });
    const graded = await db.instance.findUniqueOrThrow({ where: { id: f.instanceId } });
    const lateral = await db.instance.create({
      data: {
        sopInstanceUid: newUid(),
        sopClassUid: graded.sopClassUid,
        studyId: study.id,
        seriesId: graded.seriesId,
        transferSyntaxUid: graded.transferSyntaxUid,
        spoolPath: spoolFile,
        digest: `blake3:${"1".repeat(64)}`,
        sizeBytes: 1n,
        callingAet: "MODALITY",
        revision: 1,
        routing: "KNEE",
        routingReason: "test",
        viewPosition: "LL",
      },
    });
    await db.instanceGrading.create({
      data: {
        gradingJobId: f.jobId,
        instanceId: lateral.id,
        outcome: "REFUSED",
        code: "NOT_AP_VIEW",
        reason: "ViewPosition LL is not an AP/PA view",
        timingsMs: {},
      },
    });
    const page = await logIn();
    await openStudy(page, f.uid);
    const listed = await page.textContent("#not-graded-images");
    expect(listed).toContain("One image of this study was not graded by the AI");
    expect(listed).toContain("LL — refused by the AI: ViewPosition LL is not an AP/PA view");
    // It is not a knee to decide on: the two graded knees' cards only, none for the lateral view.
    expect(await page.locator("section.knee").count()).toBe(2);
    expect(await page.locator("section.knee.missing").count()).toBe(0);

    // A study whose only images were refused: said plainly, with each image's reason.
    const r = await gradedStudy({ knees: [] });
    await db.instanceGrading.update({
      where: { gradingJobId_instanceId: { gradingJobId: r.jobId, instanceId: r.instanceId } },
      data: {
        outcome: "REFUSED",
        code: "NO_KNEE_FOUND",
        reason: "no knee joint found",
        kneesFound: 0,
      },
    });
    await db.study.update({ where: { studyInstanceUid: r.uid }, data: { status: "REFUSED" } });
    await openStudy(page, r.uid);
    expect(await page.textContent("#none-graded")).toContain(
      "No image of this study was graded by the AI: its only image was refused",
    );
    expect(await page.textContent("#ungraded")).toContain("refused by the AI: no knee joint found");
    expect(await page.locator("#sign").count()).toBe(0);
    await page.context().close();
  });

  it("pictures are kept privately by the browser and revalidated (304, not rendered again); pages stay no-store", async () => {
    const { f, page } = await openGraded(bilateral(2, 3), true);
    const radiograph = await page.locator("img.radiograph").getAttribute("data-base");
    const study = await page.request.get(`${base}/studies/${f.uid}`);
    expect(study.headers()["cache-control"]).toBe("no-store");
    for (const path of [
      radiograph!,
      `${radiograph}?full=1`,
      `${radiograph}?wc=1000&ww=400`,
      `/knees/${f.kneeIds[0]}/crop.png`,
      `/knees/${f.kneeIds[0]}/heatmap.png`,
      `/knees/${f.kneeIds[0]}/region.png`,
    ]) {
      let started = Date.now();
      const first = await page.request.get(`${base}${path}`);
      const rendered = Date.now() - started;
      expect(first.status(), path).toBe(200);
      expect(first.headers()["cache-control"], path).toBe("private, no-cache");
      const etag = first.headers().etag;
      expect(etag, path).toMatch(/^"[\w-]+"$/);
      started = Date.now();
      const again = await page.request.get(`${base}${path}`, {
        headers: { "if-none-match": etag! },
      });
      if (path === radiograph) {
        console.log(
          `radiograph: rendered in ${rendered} ms, revalidated in ${Date.now() - started} ms`,
        );
      }
      expect(again.status(), path).toBe(304);
      expect((await again.body()).length, path).toBe(0);
    }
    // Another view of the same image is another picture.
    const fit = await page.request.get(`${base}${radiograph}`);
    const full = await page.request.get(`${base}${radiograph}?full=1`);
    expect(fit.headers().etag).not.toBe(full.headers().etag);
    // Logged out, a revalidation is refused, not answered from what the browser kept.
    const context = await browser.newContext();
    const stranger = await context.request.get(`${base}${radiograph}`, {
      headers: { "if-none-match": fit.headers().etag! },
      maxRedirects: 0,
    });
    expect(stranger.status()).not.toBe(304);
    expect(stranger.status()).not.toBe(200);
    await context.close();
    await page.context().close();
  });
});
