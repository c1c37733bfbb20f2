/**
 * Spool retention on the real PostgreSQL: settled studies older than SPOOL_RETENTION_DAYS lose
 * their files, never their rows; studies still in flight keep everything.
 */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { sweepSpool } from "@kneegrade/listener";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Harness, sendStudy, startHarness, waitFor } from "../helpers/env.ts";
import { buildStudy } from "../helpers/studies.ts";

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ STUDY_STABLE_SECONDS: "1" });
});
afterAll(async () => {
  await h.stop();
});

async function studyIn(status: "REPORTED" | "QUEUED", ageDays: number) {
  const study = await buildStudy({
    dir: join(h.config.SPOOL_DIR, "sources", `${Math.random()}`),
    sources: ["RG3_UNC.dcm"],
    bodyPart: "KNEE",
  });
  await sendStudy(h.target, study);
  const row = await waitFor(async () => {
    const s = await h.db.study.findUnique({ where: { studyInstanceUid: study.studyInstanceUid } });
    return s?.status === "QUEUED" ? s : undefined;
  });
  const reportPath = join(h.config.SPOOL_DIR, "reports", study.studyInstanceUid, "sr.dcm");
  await mkdir(join(h.config.SPOOL_DIR, "reports", study.studyInstanceUid), { recursive: true });
  await writeFile(reportPath, "report");
  await h.db.report.create({
    data: {
      studyId: row.id,
      sopInstanceUid: `${study.studyInstanceUid}.9`,
      seriesInstanceUid: `${study.studyInstanceUid}.8`,
      sopClassUid: "1.2.840.10008.5.1.4.1.1.88.33",
      path: reportPath,
      sha256: "0".repeat(64),
    },
  });
  // Settle it (or not) and age it: updatedAt is what retention looks at.
  await h.db
    .$executeRaw`UPDATE "Study" SET status = ${status}::"StudyStatus", "updatedAt" = now() - make_interval(days => ${ageDays}) WHERE id = ${row.id}::uuid`;
  const instance = await h.db.instance.findFirstOrThrow({ where: { studyId: row.id } });
  return { uid: study.studyInstanceUid, instance, reportPath };
}

it("removes the files of settled studies past the retention period and keeps every row", async () => {
  const old = await studyIn("REPORTED", 40);
  const recent = await studyIn("REPORTED", 2);
  const inFlight = await studyIn("QUEUED", 40);
  expect(existsSync(old.instance.spoolPath!)).toBe(true);

  expect(await sweepSpool(h.db, 0)).toEqual({ studies: 0, images: 0, reports: 0 }); // 0 = keep all
  const swept = await sweepSpool(h.db, 30);
  expect(swept).toEqual({ studies: 1, images: 1, reports: 1 });

  expect(existsSync(old.instance.spoolPath!)).toBe(false);
  expect(existsSync(old.reportPath)).toBe(false);
  const after = await h.db.instance.findUniqueOrThrow({ where: { id: old.instance.id } });
  expect(after.spoolPath).toBeNull();
  expect(after.digest).toBe(old.instance.digest);
  expect(await h.db.report.count({ where: { study: { studyInstanceUid: old.uid } } })).toBe(1);
  const audit = await h.db.auditEvent.findFirst({
    where: { event: "spool.retention", studyInstanceUid: old.uid },
  });
  expect(audit?.details).toMatchObject({ images: 1, reports: 1, retentionDays: 30 });

  for (const kept of [recent, inFlight]) {
    expect(existsSync(kept.instance.spoolPath!)).toBe(true);
    expect(existsSync(kept.reportPath)).toBe(true);
  }
  expect(await sweepSpool(h.db, 30)).toEqual({ studies: 0, images: 0, reports: 0 }); // idempotent
});
