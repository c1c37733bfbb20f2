/**
 * Records one received instance in PostgreSQL and moves it into the spool, *before* the peer is
 * told it was stored. Re-sent instances are idempotent; an instance that arrives after its study
 * was queued opens a new revision of the study, which is graded again.
 */
import { rm, unlink } from "node:fs/promises";
import type { Db } from "@kneegrade/db";
import type { RadiographHeader, RoutingDecision } from "@kneegrade/dicom";
import { commitSpoolFile, type SpooledFile, spoolPathFor } from "./spool.ts";

export interface IngestInput {
  header: RadiographHeader;
  routing: RoutingDecision;
  file: SpooledFile;
  callingAet: string;
  spoolDir: string;
}

export type IngestOutcome =
  | { kind: "stored"; studyId: string; revision: number; newRevision: boolean }
  | { kind: "duplicate"; studyId: string }
  | { kind: "replaced"; studyId: string; revision: number };

/** Statuses after which a new knee instance starts a new revision. */
const SETTLED = new Set(["QUEUED", "GRADING", "GRADED", "REPORTED", "FAILED"]);

export async function ingestInstance(db: Db, input: IngestInput): Promise<IngestOutcome> {
  const { header, routing, file } = input;
  const keep = routing.decision === "KNEE";
  const finalPath = keep ? spoolPathFor(input.spoolDir, header) : null;

  const existing = await db.instance.findUnique({
    where: { sopInstanceUid: header.sopInstanceUid },
    select: { id: true, sha256: true, studyId: true },
  });
  if (existing && existing.sha256 === file.sha256) {
    await unlink(file.tmpPath).catch(() => {});
    await db.$transaction([
      db.instance.update({
        where: { id: existing.id },
        data: { duplicateCount: { increment: 1 } },
      }),
      db.auditEvent.create({
        data: {
          event: "instance.duplicate",
          actor: input.callingAet,
          studyInstanceUid: header.studyInstanceUid,
          sopInstanceUid: header.sopInstanceUid,
        },
      }),
    ]);
    return { kind: "duplicate", studyId: existing.studyId };
  }

  // Rename first: if the database write fails the file is removed again and the peer gets a
  // failure status, so it resends; a crash in between leaves an unreferenced file, never a row
  // pointing at nothing.
  if (finalPath) await commitSpoolFile(file.tmpPath, finalPath);
  else await unlink(file.tmpPath).catch(() => {});

  try {
    return await db.$transaction(async (tx) => {
      const study = await tx.study.upsert({
        where: { studyInstanceUid: header.studyInstanceUid },
        create: {
          studyInstanceUid: header.studyInstanceUid,
          accessionNumber: header.accessionNumber ?? null,
          modality: header.modality ?? null,
        },
        update: {},
      });
      // Serialise instances of one study against each other and against the assembler.
      await tx.$executeRaw`SELECT 1 FROM "Study" WHERE id = ${study.id}::uuid FOR UPDATE`;
      const locked = await tx.study.findUniqueOrThrow({ where: { id: study.id } });

      let revision = locked.revision;
      let newRevision = false;
      if (keep && SETTLED.has(locked.status)) {
        revision += 1;
        newRevision = true;
      }
      // A knee instance (re)opens the study; so does anything sent to a study still assembling or
      // refused (it is judged again when stable). Other instances leave a settled study alone.
      const reopen = keep || locked.status === "RECEIVING" || locked.status === "REFUSED";
      await tx.study.update({
        where: { id: locked.id },
        data: {
          revision,
          lastReceivedAt: new Date(),
          ...(reopen ? { status: "RECEIVING", statusReason: null } : {}),
        },
      });

      const series = await tx.series.upsert({
        where: { seriesInstanceUid: header.seriesInstanceUid },
        create: {
          seriesInstanceUid: header.seriesInstanceUid,
          studyId: locked.id,
          modality: header.modality ?? null,
          bodyPartExamined: header.bodyPartExamined ?? null,
          seriesDescription: header.seriesDescription ?? null,
        },
        update: {},
      });

      const data = {
        sopClassUid: header.sopClassUid,
        studyId: locked.id,
        seriesId: series.id,
        transferSyntaxUid: header.transferSyntaxUid,
        spoolPath: finalPath,
        sha256: file.sha256,
        sizeBytes: BigInt(file.sizeBytes),
        callingAet: input.callingAet,
        receivedAt: new Date(),
        revision,
        routing: routing.decision,
        routingReason: routing.reason,
        imageLaterality: header.imageLaterality ?? header.laterality ?? null,
        viewPosition: header.viewPosition ?? null,
      };
      if (existing) {
        await tx.instance.update({ where: { id: existing.id }, data });
      } else {
        await tx.instance.create({ data: { sopInstanceUid: header.sopInstanceUid, ...data } });
      }
      await tx.auditEvent.create({
        data: {
          event: existing ? "instance.replaced" : "instance.stored",
          actor: input.callingAet,
          studyInstanceUid: header.studyInstanceUid,
          sopInstanceUid: header.sopInstanceUid,
          details: {
            routing: routing.decision,
            reason: routing.reason,
            revision,
            transferSyntaxUid: header.transferSyntaxUid,
            sizeBytes: file.sizeBytes,
          },
        },
      });
      if (existing) return { kind: "replaced" as const, studyId: locked.id, revision };
      return { kind: "stored" as const, studyId: locked.id, revision, newRevision };
    });
  } catch (error) {
    if (finalPath && !existing) await rm(finalPath, { force: true });
    throw error;
  }
}
