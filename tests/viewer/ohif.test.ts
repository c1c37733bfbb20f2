/**
 * kneegrade's SRs in a real viewer: OHIF 3.13 (the prebuilt `@ohif/app`) on a real
 * Orthanc with its DICOMweb plugin, in headless Chromium. A graded study (radiograph + AI SR) and a
 * signed one (+ the radiologist's signed revision) are stored in Orthanc; the viewer opens each,
 * loads ("tracks") the SR, and its measurements panel must list every knee with its grade and side
 * — the AI's marked as such, the radiologist's as the radiologist's — each on its region of the
 * radiograph (the crop square: 90 × 90 mm = 8100 mm²). Screenshots go to var/viewer/.
 *
 * `npm run test:viewer`. Skipped, saying why, where Chromium, Orthanc or Orthanc's DICOMweb plugin
 * is missing (infra/setup.sh installs all three).
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUid } from "@kneegrade/dicom";
import { type ReportInput, writeComprehensiveSr } from "@kneegrade/dicom-writers";
import {
  type ComposedRadiograph,
  composeBilateral,
  REPO_ROOT,
  radiographDicom,
  SHARED_DATA,
} from "@kneegrade/sample-radiographs";
import { type Browser, chromium, type Page } from "playwright-core";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cropPng, fixture, signedRevision } from "../../packages/dicom-writers/src/test-support.ts";
import { ohifDist, type RunningOhif, startOhif } from "../helpers/ohif.ts";
import {
  dicomWebPlugin,
  orthancBinary,
  type RunningOrthanc,
  startOrthanc,
} from "../helpers/orthanc.ts";

const CHROMIUM = "/usr/bin/chromium";
const SHOTS = join(REPO_ROOT, "var", "viewer");
const VAL = `${SHARED_DATA}knee-kl/val/`;

const missing = [
  existsSync(CHROMIUM) ? null : `Chromium (${CHROMIUM}; Debian package chromium)`,
  orthancBinary() ? null : "Orthanc (Debian package orthanc)",
  dicomWebPlugin() ? null : "Orthanc's DICOMweb plugin (Debian package orthanc-dicomweb)",
].filter((m): m is string => m !== null);
if (missing.length > 0) {
  console.warn(`SKIPPED tests/viewer: missing ${missing.join(", ")} — run infra/setup.sh`);
}

/** A bilateral radiograph, with the report inputs of its AI SR (right KL 3, left KL 1). */
async function gradedStudy(work: string, name: string, seed: number) {
  // Real knee crops where the data set is here, else the same synthetic crop twice.
  let pngs: [string, string] = [`${VAL}1/9003380R.png`, `${VAL}3/9107980R.png`];
  if (!pngs.every(existsSync)) {
    const crop = join(work, "crop.png");
    await writeFile(crop, await cropPng());
    pngs = [crop, crop];
  }
  const r: ComposedRadiograph = await composeBilateral(pngs, seed);
  const studyInstanceUid = randomUid();
  const source = {
    sopClassUid: "1.2.840.10008.5.1.4.1.1.1.1",
    sopInstanceUid: randomUid(),
    seriesInstanceUid: randomUid(),
  };
  const image = radiographDicom(r, {
    studyInstanceUid,
    ...source,
    studyDescription: `XR KNEE BILATERAL (${name})`,
  });
  // The SR's patient and study attributes are those of the image, as the reporter copies them.
  const square = (t: ComposedRadiograph["truth"][number]) => ({
    x: t.cx - t.side / 2,
    y: t.cy - t.side / 2,
    width: t.side,
    height: t.side,
  });
  const base = fixture();
  // PatientOrientation L\F: the image's left knee is the patient's right.
  const input: ReportInput = fixture({
    context: {
      studyInstanceUid,
      patientName: "Synthetic^Knee",
      patientId: "SYNTH-KNEE",
      patientSex: "O",
      studyDate: "20261127",
      studyTime: "101500",
      studyId: "1",
      accessionNumber: "SYNTH0001",
      studyDescription: `XR KNEE BILATERAL (${name})`,
    },
    knees: [
      { ...base.knees[0]!, source, region: square(r.truth[0]!) },
      { ...base.knees[1]!, source, region: square(r.truth[1]!) },
    ],
    seriesInstanceUid: randomUid(),
    sopInstanceUid: randomUid(),
  });
  return { studyInstanceUid, image, input };
}

async function store(orthanc: RunningOrthanc, bytes: Uint8Array): Promise<void> {
  const res = await fetch(`${orthanc.httpUrl}/instances`, { method: "POST", body: bytes });
  expect(res.status, await res.text()).toBe(200);
}

describe.skipIf(missing.length > 0)("kneegrade's SRs in OHIF", () => {
  let work: string;
  let orthanc: RunningOrthanc;
  let ohif: RunningOhif;
  let browser: Browser;
  let graded: string;
  let signed: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "kneegrade-viewer-"));
    await mkdir(SHOTS, { recursive: true });
    const dist = await ohifDist();
    orthanc = await startOrthanc("ORTHANC", { dicomWeb: true });
    ohif = await startOhif(dist, orthanc.httpUrl);

    const a = await gradedStudy(work, "graded", 1);
    await store(orthanc, a.image);
    await store(orthanc, writeComprehensiveSr(a.input));
    graded = a.studyInstanceUid;

    // Signed: the radiologist grades the right knee 2 (the AI said 3), the left one not gradable.
    const b = await gradedStudy(work, "signed", 2);
    await store(orthanc, b.image);
    await store(orthanc, writeComprehensiveSr(b.input));
    const revision = signedRevision(b.input, {
      knees: [{ grade: 2 }, { grade: null, notGradableReason: "rotated, joint space not seen" }],
    });
    await store(
      orthanc,
      writeComprehensiveSr({
        ...revision,
        seriesInstanceUid: randomUid(),
        sopInstanceUid: randomUid(),
        seriesNumber: 981,
      }),
    );
    signed = b.studyInstanceUid;

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // OHIF renders with WebGL: software GL where the machine has no GPU.
      args: ["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"],
    });
  }, 900_000);

  afterAll(async () => {
    await browser?.close();
    await ohif?.stop();
    await orthanc?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /**
   * Opens the study, double-clicks the SR series named `series` in the study browser, accepts
   * OHIF's offer to track its measurements and opens the measurements panel. Returns the panel's
   * text and what OHIF said on its console while loading the SR.
   */
  async function loadSr(studyInstanceUid: string, series: string, shot: string) {
    const page: Page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    const console: string[] = [];
    page.on("console", (m) => console.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => console.push(`pageerror: ${e.message}`));
    try {
      // The first-visit tour would cover the viewer: marked as seen, as OHIF records it.
      await page.addInitScript({
        content: `localStorage.setItem("shownTours", JSON.stringify(["basicViewerTour"]))`,
      });
      await page.goto(`${ohif.url}/viewer?StudyInstanceUIDs=${studyInstanceUid}`);
      const thumbnail = page.getByText(series).first();
      await thumbnail.waitFor({ timeout: 180_000 });
      // As a reader does: the radiograph first, then the SR.
      await drawn(page);
      await thumbnail.dblclick();
      const track = page.getByRole("button", { name: /^yes$/i });
      await track.waitFor({ timeout: 120_000 });
      await track.click();
      await page.locator('[data-cy="trackedMeasurements-btn"]').click();
      await page.getByText(/^Measurements \(\d+\)$/).waitFor({ timeout: 60_000 });
      // The rectangles' statistics are computed from the pixels after the panel appears.
      await page
        .getByText(/8100 mm²/)
        .first()
        .waitFor({ timeout: 60_000 });
      // …and the radiograph under them is drawn once its pixels are in.
      await drawn(page);
      await page.screenshot({ path: join(SHOTS, shot) });
      // biome-ignore lint/performance/useDomNodeTextContent: the rendered lines are parsed below; textContent runs them together
      return { text: await page.locator("body").innerText(), console };
    } finally {
      await page.close();
    }
  }

  /** Waits until the viewport shows the radiograph: its mean grey clearly above black. */
  async function drawn(page: Page): Promise<void> {
    const pane = page.locator('[data-cy="viewport-pane"]').first();
    const deadline = Date.now() + 120_000;
    for (;;) {
      const stats = await sharp(await pane.screenshot()).stats();
      if (stats.channels[0]!.mean > 40) return;
      if (Date.now() > deadline) throw new Error("the viewport never showed the radiograph");
      await page.waitForTimeout(1_000);
    }
  }

  /** The panel's measurements: title line, then its lines up to the next number. */
  function measurements(text: string): { label: string; lines: string[] }[] {
    const after = text.split(/Measurements \(\d+\)/)[1] ?? "";
    const items: { label: string; lines: string[] }[] = [];
    let current: { label: string; lines: string[] } | null = null;
    let expectLabel = false;
    for (const line of after.split("\n").map((l) => l.trim())) {
      if (/^\d+$/.test(line)) {
        expectLabel = true;
      } else if (expectLabel && line) {
        current = { label: line, lines: [] };
        items.push(current);
        expectLabel = false;
      } else if (current && line) {
        current.lines.push(line);
      }
    }
    return items;
  }

  it("shows the AI's grade and side of every knee, on its region, after loading the AI SR", async () => {
    const { text, console } = await loadSr(graded, "AI result (kneegrade)", "graded-study.png");
    expect(text).toContain("Measurements (2)");
    const items = measurements(text);
    expect(items.map((m) => m.label)).toEqual([
      "AI result: right knee, Kellgren-Lawrence grade 3 (moderate)",
      "AI result: left knee, Kellgren-Lawrence grade 1 (doubtful)",
    ]);
    for (const m of items) {
      expect(m.lines).toContain("Knee joint");
      expect(m.lines.join(" ")).toContain("8100 mm²");
    }
    expect(console.filter((l) => /Unable to generate tool state|pageerror/.test(l))).toEqual([]);
  });

  it("shows the radiologist's grades as such, and the AI's for reference, after loading the signed SR", async () => {
    const { text, console } = await loadSr(signed, "Signed report (kneegrade", "signed-study.png");
    expect(text).toContain("Measurements (4)");
    expect(measurements(text).map((m) => m.label)).toEqual([
      "Right knee, Kellgren-Lawrence grade 2 (minimal)",
      "AI result: right knee, Kellgren-Lawrence grade 3 (moderate)",
      "Left knee, not gradable (Kellgren-Lawrence)",
      "AI result: left knee, Kellgren-Lawrence grade 1 (doubtful)",
    ]);
    for (const m of measurements(text)) expect(m.lines.join(" ")).toContain("8100 mm²");
    expect(console.filter((l) => /Unable to generate tool state|pageerror/.test(l))).toEqual([]);
  });

  it("saved the screenshots", async () => {
    for (const shot of ["graded-study.png", "signed-study.png"]) {
      const png = await readFile(join(SHOTS, shot));
      expect(png.subarray(1, 4).toString()).toBe("PNG");
    }
  });
});
