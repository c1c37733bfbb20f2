/**
 * The whole product with real parts: DCMTK storescu (the modality) → listener → worker → reporter →
 * Orthanc (the PACS, Debian's package), on the local PostgreSQL and Redis, with a test model
 * exported by the models/ toolkit. Checked through Orthanc's REST API and with DCMTK's dsrdump and
 * dicom3tools' dciodvfy.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createLogger } from "@kneegrade/log";
import { redeliver } from "@kneegrade/report-jobs";
import { type RunningReporter, startReporter } from "@kneegrade/reporter";
import {
  composeBilateral,
  composeRadiograph,
  radiographDicom,
} from "@kneegrade/sample-radiographs";
import { type RunningWorker, startWorker } from "@kneegrade/worker";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectStatus } from "../../packages/cli/src/status.ts";
import { CLI, configEnv } from "../helpers/cli.ts";
import { dciodvfyErrors, storescu } from "../helpers/dcmtk.ts";
import {
  activeGradingJob,
  type Harness,
  pipelineSettings,
  startHarness,
  waitFor,
} from "../helpers/env.ts";
import { type RunningOrthanc, startOrthanc } from "../helpers/orthanc.ts";
import { REPO_ROOT, SHARED_DATA } from "../helpers/paths.ts";
import { startSwitchProxy } from "../helpers/proxy.ts";
import { newUid } from "../helpers/studies.ts";

const run = promisify(execFile);
const work = join(tmpdir(), `kneegrade-e2e-${process.pid}`);
const VAL = `${SHARED_DATA}knee-kl/val/`;
const quiet = createLogger("test", "silent");

interface OrthancInstance {
  ID: string;
  MainDicomTags: Record<string, string>;
}

describe("end to end: storescu → kneegrade → Orthanc", () => {
  let orthanc: RunningOrthanc;
  let pacs: Awaited<ReturnType<typeof startSwitchProxy>>;
  let h: Harness;
  let worker: RunningWorker | undefined;
  let reporter: RunningReporter | undefined;

  beforeAll(async () => {
    await mkdir(work, { recursive: true });
    orthanc = await startOrthanc("ORTHANC");
    pacs = await startSwitchProxy(orthanc.dicomPort);
    h = await startHarness({
      ...(await pipelineSettings(pacs.port, "test", 2)),
      DELIVERY_ATTEMPTS: "8",
      JOB_LOCK_SECONDS: "3",
    });
    worker = await startWorker(h.config, h.db, quiet);
    reporter = await startReporter(h.config, h.db, quiet);
  }, 300_000);
  afterAll(async () => {
    await reporter?.close();
    await worker?.close();
    await h.stop();
    await pacs.close();
    await orthanc.stop();
    await rm(work, { recursive: true, force: true });
  });

  async function bilateral(name: string, pngs: [string, string]) {
    const r = await composeBilateral([`${VAL}${pngs[0]}`, `${VAL}${pngs[1]}`]);
    const studyInstanceUid = newUid();
    const path = join(work, `${name}.dcm`);
    await writeFile(path, radiographDicom(r, { studyInstanceUid }));
    return { path, studyInstanceUid };
  }

  const findInOrthanc = async (studyInstanceUid: string, modality: string) => {
    const response = await fetch(`${orthanc.httpUrl}/tools/find`, {
      method: "POST",
      body: JSON.stringify({
        Level: "Instance",
        Query: { StudyInstanceUID: studyInstanceUid, Modality: modality },
        Expand: true,
      }),
    });
    return (await response.json()) as OrthancInstance[];
  };
  const studyStatus = async (uid: string) =>
    (await h.db.study.findUnique({ where: { studyInstanceUid: uid } }))?.status;
  const waitForReported = (uid: string, timeoutMs = 60_000) =>
    waitFor(
      async () => ((await studyStatus(uid)) === "REPORTED" ? true : undefined),
      timeoutMs,
      "REPORTED",
    );

  it("grades a bilateral study and lands one valid SR (and a secondary capture) in the PACS", async () => {
    const study = await bilateral("bilateral", ["1/9003380R.png", "3/9107980R.png"]);
    const sent = await storescu(h.target, [study.path]);
    expect(sent.code, sent.stderr).toBe(0);
    await waitForReported(study.studyInstanceUid);

    const srs = await findInOrthanc(study.studyInstanceUid, "SR");
    expect(srs).toHaveLength(1);
    const file = join(work, "sr.dcm");
    const bytes = new Uint8Array(
      await (await fetch(`${orthanc.httpUrl}/instances/${srs[0]!.ID}/file`)).arrayBuffer(),
    );
    await writeFile(file, bytes);
    const dump = (await run("dsrdump", ["-Ee", file])).stdout;
    const results = await h.db.kneeResult.findMany({
      where: { instance: { study: { studyInstanceUid: study.studyInstanceUid } } },
    });
    expect(results).toHaveLength(2);
    // Each measurement group: its knee's laterality and KL grade, as PostgreSQL has them.
    const groups = dump.split('CONTAINER:(,,"Measurement Group")').slice(1);
    const inSr = Object.fromEntries(
      groups.map((g) => [
        /Laterality"\)=\(\d+,SCT,"(Right|Left)"\)/.exec(g)?.[1]?.toUpperCase(),
        Number(/<contains CODE:\(,,"Finding"\)=\((?:AI)?KL(\d)/.exec(g)?.[1]),
      ]),
    );
    expect(inSr).toEqual(Object.fromEntries(results.map((r) => [r.laterality, r.klGrade])));
    expect(Object.keys(inSr).sort()).toEqual(["LEFT", "RIGHT"]);
    expect(dump).toMatch(/Verification Flag\s*: UNVERIFIED/);
    expect(await dciodvfyErrors(file)).toEqual([]);

    const captures = await findInOrthanc(study.studyInstanceUid, "OT");
    expect(captures.length).toBeGreaterThanOrEqual(1);
    // PostgreSQL agrees: the reports, and their deliveries to this PACS.
    const reports = await h.db.report.findMany({
      where: { study: { studyInstanceUid: study.studyInstanceUid } },
      include: { deliveries: true },
    });
    expect(reports.map((r) => r.sopInstanceUid).sort()).toContain(
      srs[0]!.MainDicomTags.SOPInstanceUID,
    );
    for (const r of reports) {
      expect(r.verified).toBe(false);
      expect(r.deliveries).toMatchObject([{ status: "SENT", destinationAet: "ORTHANC" }]);
    }

    // Sent twice: the listener sees a resend, nothing is graded or reported again.
    await storescu(h.target, [study.path]);
    await new Promise((r) => setTimeout(r, 3000));
    expect(await findInOrthanc(study.studyInstanceUid, "SR")).toHaveLength(1);
    expect(
      await h.db.report.count({ where: { study: { studyInstanceUid: study.studyInstanceUid } } }),
    ).toBe(reports.length);
  }, 120_000);

  it("reports a study it could not grade, saying why, in the PACS too", async () => {
    const r = await composeRadiograph({
      widthMm: 200,
      heightMm: 250,
      spacingMm: 0.2,
      knees: [{ png: `${VAL}2/9023348R.png`, xMm: 100, yMm: 125, sideMm: 90 }],
    });
    const studyInstanceUid = newUid();
    const path = join(work, "lateral.dcm");
    await writeFile(
      path,
      radiographDicom(r, { studyInstanceUid, viewPosition: "LL", imageLaterality: "R" }),
    );
    await storescu(h.target, [path]);
    await waitFor(
      async () => ((await findInOrthanc(studyInstanceUid, "SR")).length === 1 ? true : undefined),
      60_000,
      "the SR of a refused study",
    );
    expect(await studyStatus(studyInstanceUid)).toBe("REFUSED");
    const [sr] = await findInOrthanc(studyInstanceUid, "SR");
    const file = join(work, "refused-sr.dcm");
    await writeFile(
      file,
      new Uint8Array(
        await (await fetch(`${orthanc.httpUrl}/instances/${sr!.ID}/file`)).arrayBuffer(),
      ),
    );
    const dump = (await run("dsrdump", ["-Ee", "+Pl", file])).stdout;
    expect(dump).toMatch(/Completion Flag\s*: PARTIAL/);
    expect(dump).not.toMatch(/"Measurement Group"/);
    expect(dump).toMatch(/not an AP\/PA|ViewPosition LL/);
  }, 90_000);

  it("delivers after the PACS comes back, and dead-letters (then redelivers) when it does not", async () => {
    pacs.down();
    const study = await bilateral("pacs-down", ["0/9034812R.png", "2/9023348R.png"]);
    await storescu(h.target, [study.path]);
    // Attempts fail while the PACS is down, and say why.
    const failing = await waitFor(async () => {
      const d = await h.db.delivery.findFirst({
        where: {
          report: { study: { studyInstanceUid: study.studyInstanceUid } },
          attempts: { gte: 2 },
        },
      });
      return d ?? undefined;
    }, 60_000);
    expect(failing.status).toBe("PENDING");
    expect(failing.lastError).toBeTruthy();
    expect(await studyStatus(study.studyInstanceUid)).toBe("GRADED");
    // The reporter restarts meanwhile: nothing is lost, nothing is written twice.
    await reporter?.close();
    reporter = await startReporter(h.config, h.db, quiet);
    pacs.up();
    await waitForReported(study.studyInstanceUid);
    expect(await findInOrthanc(study.studyInstanceUid, "SR")).toHaveLength(1);
    expect(
      await h.db.report.count({ where: { study: { studyInstanceUid: study.studyInstanceUid } } }),
    ).toBe(2); // the SR and the secondary capture, once each

    // Down for longer than every attempt: the dead letter, visible, and `kneegrade redeliver`.
    pacs.down();
    const late = await bilateral("dead-letter", ["4/9511862R.png", "1/9056978R.png"]);
    await storescu(h.target, [late.path]);
    await waitFor(
      async () => {
        const d = await h.db.delivery.findFirst({
          where: {
            report: { study: { studyInstanceUid: late.studyInstanceUid } },
            status: "FAILED",
          },
        });
        return d ?? undefined;
      },
      90_000,
      "a dead letter",
    );
    const status = await collectStatus(h.db, h.config);
    expect(status.deliveries.byStatus.FAILED).toBeGreaterThanOrEqual(1);
    pacs.up();
    const again = await redeliver(h.db, h.config, late.studyInstanceUid);
    expect(again.deliveries).toBeGreaterThanOrEqual(1);
    await waitForReported(late.studyInstanceUid);
    expect(await findInOrthanc(late.studyInstanceUid, "SR")).toHaveLength(1);
  }, 240_000);

  it("completes a study whose worker was killed in the middle of grading it", async () => {
    await worker?.close();
    worker = undefined;
    // A worker in its own process, as in production; killed with SIGKILL while grading.
    const child: ChildProcess = spawn(process.execPath, [CLI, "serve", "--only", "worker"], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        ...configEnv(h.config),
        MODEL_DIR: h.config.MODEL_DIR,
        ALLOW_TEST_MODEL: "1",
        JOB_LOCK_SECONDS: "3",
        LOG_LEVEL: "silent",
      },
      stdio: "ignore",
    });
    const study = await bilateral("killed", ["2/9118689L.png", "3/9026695L.png"]);
    await storescu(h.target, [study.path]);
    await activeGradingJob(h.db, study.studyInstanceUid, 60_000);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    expect(await studyStatus(study.studyInstanceUid)).toBe("GRADING");
    // Another worker takes the job once the dead one's lock has expired.
    worker = await startWorker(h.config, h.db, quiet);
    await waitForReported(study.studyInstanceUid, 90_000);
    expect(await findInOrthanc(study.studyInstanceUid, "SR")).toHaveLength(1);
    expect(
      await h.db.kneeResult.count({
        where: { instance: { study: { studyInstanceUid: study.studyInstanceUid } } },
      }),
    ).toBe(2);
  }, 180_000);
});
