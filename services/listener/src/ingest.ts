/**
 * Records one received instance in PostgreSQL and moves it into the spool, *before* the peer is
 * told it was stored. Re-sent instances are idempotent; an instance that arrives after its study
 * was queued opens a new revision of the study, which is graded again.
 *
 * This is the hot path of ingest (the peer waits for it), so it is two SQL statements rather than
 * an interactive transaction: one for the resend check, and one atomic statement whose
 * `INSERT … ON CONFLICT DO UPDATE` on the study row both locks it against the assembler and decides
 * the revision (see docs/ARCHITECTURE.md, "Ingest"). Both run through node-postgres on Prisma's
 * connections (`sqlOf`): Prisma's query layer would add about half a millisecond of CPU to each.
 */
import { randomUUID } from "node:crypto";
import { readFile, rm, unlink } from "node:fs/promises";
import { type Db, type Sql, sqlOf } from "@kneegrade/db";
import {
  clampHeader,
  LEGACY_DIGEST_PREFIX,
  type LimitNote,
  legacyInstanceDigest,
  type RadiographHeader,
} from "@kneegrade/dicom";
import type { RoutingDecision } from "@kneegrade/routing";
import { commitSpoolFile, type SpooledFile, spoolPathFor } from "./spool.ts";

export interface IngestInput {
  header: RadiographHeader;
  routing: RoutingDecision;
  file: SpooledFile;
  callingAet: string;
  spoolDir: string;
}

export type IngestOutcome = (
  | { kind: "stored"; studyId: string; revision: number }
  | { kind: "duplicate"; studyId: string }
  | { kind: "replaced"; studyId: string; revision: number }
) & {
  /** Header values that were out of their VR's limits and stored truncated or not at all. */
  limitNotes: LimitNote[];
};

export async function ingestInstance(db: Db, input: IngestInput): Promise<IngestOutcome> {
  const { routing, file } = input;
  // What is stored is held to the VR limits, so that it can be shown and written back into DICOM
  // as it is; the spooled file stays as received.
  const { header, notes: limitNotes } = clampHeader(input.header);
  const keep = routing.decision === "KNEE";
  const sql = sqlOf(db);

  // The same object again (same SOP Instance UID, same bytes): count it, change nothing else.
  const studyId = await countDuplicate(sql, input, header, file);
  if (studyId) {
    await unlink(file.tmpPath).catch(() => {});
    return { kind: "duplicate", studyId, limitNotes };
  }

  // Rename first: if the database write fails the file is removed again and the peer gets a
  // failure status, so it resends; a crash in between leaves an unreferenced file, never a row
  // pointing at nothing.
  const spoolPath = keep ? spoolPathFor(input.spoolDir, header) : null;
  if (spoolPath) await commitSpoolFile(file.tmpPath, spoolPath);
  else await unlink(file.tmpPath).catch(() => {});

  const details = JSON.stringify({
    routing: routing.decision,
    reason: routing.reason,
    transferSyntaxUid: header.transferSyntaxUid,
    sizeBytes: file.sizeBytes,
    // Which attributes and which rule, never the values (audit details hold no patient data).
    ...(limitNotes.length > 0
      ? { headerLimits: limitNotes.map(({ tag, vr, action, rule }) => ({ tag, vr, action, rule })) }
      : {}),
  });
  try {
    const [row] = await sql<{ studyId: string; revision: number; replaced: boolean }>`
      WITH study AS (
        INSERT INTO "Study" (id, "studyInstanceUid", "accessionNumber", modality, "patientName",
                             "patientId", "studyDate", "updatedAt")
        VALUES (${randomUUID()}::uuid, ${header.studyInstanceUid}, ${header.accessionNumber ?? null},
                ${header.modality ?? null}, ${header.patientName ?? null}, ${header.patientId ?? null},
                ${header.studyDate ?? null}, now())
        ON CONFLICT ("studyInstanceUid") DO UPDATE SET
          -- The worklist shows who and when from the first instance on, whatever becomes of the
          -- report; an instance without them leaves what an earlier one brought.
          "patientName" = COALESCE(EXCLUDED."patientName", "Study"."patientName"),
          "patientId" = COALESCE(EXCLUDED."patientId", "Study"."patientId"),
          "studyDate" = COALESCE(EXCLUDED."studyDate", "Study"."studyDate"),
          -- A knee instance in a settled study opens the next revision...
          revision = CASE WHEN ${keep} AND "Study".status IN ('QUEUED', 'GRADING', 'GRADED', 'REPORTED', 'FAILED')
                          THEN "Study".revision + 1 ELSE "Study".revision END,
          -- ...and (re)opens the study; so does anything sent to a study still assembling or
          -- refused (it is judged again when stable). Other instances leave a settled study alone.
          status = CASE WHEN ${keep} OR "Study".status IN ('RECEIVING', 'REFUSED')
                        THEN 'RECEIVING'::"StudyStatus" ELSE "Study".status END,
          "statusReason" = CASE WHEN ${keep} OR "Study".status IN ('RECEIVING', 'REFUSED')
                                THEN NULL ELSE "Study"."statusReason" END,
          "lastReceivedAt" = now(),
          "updatedAt" = now()
        RETURNING id, revision
      ), series AS (
        INSERT INTO "Series" (id, "seriesInstanceUid", "studyId", modality, "bodyPartExamined", "seriesDescription")
        SELECT ${randomUUID()}::uuid, ${header.seriesInstanceUid}, study.id, ${header.modality ?? null},
               ${header.bodyPartExamined ?? null}, ${header.seriesDescription ?? null}
        FROM study
        ON CONFLICT ("seriesInstanceUid") DO UPDATE SET "seriesInstanceUid" = EXCLUDED."seriesInstanceUid"
        RETURNING id
      ), instance AS (
        INSERT INTO "Instance" (id, "sopInstanceUid", "sopClassUid", "studyId", "seriesId",
          "transferSyntaxUid", "spoolPath", digest, "sizeBytes", "callingAet", "receivedAt", revision,
          routing, "routingReason", "imageLaterality", "viewPosition")
        SELECT ${randomUUID()}::uuid, ${header.sopInstanceUid}, ${header.sopClassUid}, study.id, series.id,
               ${header.transferSyntaxUid}, ${spoolPath}, ${file.digest}, ${BigInt(file.sizeBytes)},
               ${input.callingAet}, now(), study.revision, ${routing.decision}::"RoutingDecision",
               ${routing.reason}, ${header.imageLaterality ?? header.laterality ?? null},
               ${header.viewPosition ?? null}
        FROM study, series
        -- Same UID, other content: the sender replaced the object; keep the new one.
        ON CONFLICT ("sopInstanceUid") DO UPDATE SET
          "studyId" = EXCLUDED."studyId", "seriesId" = EXCLUDED."seriesId",
          "transferSyntaxUid" = EXCLUDED."transferSyntaxUid", "spoolPath" = EXCLUDED."spoolPath",
          digest = EXCLUDED.digest, "sizeBytes" = EXCLUDED."sizeBytes",
          "callingAet" = EXCLUDED."callingAet", "receivedAt" = EXCLUDED."receivedAt",
          revision = EXCLUDED.revision, routing = EXCLUDED.routing,
          "routingReason" = EXCLUDED."routingReason", "imageLaterality" = EXCLUDED."imageLaterality",
          "viewPosition" = EXCLUDED."viewPosition"
        RETURNING (xmax <> 0) AS replaced
      ), audit AS (
        INSERT INTO "AuditEvent" (event, actor, "studyInstanceUid", "sopInstanceUid", details)
        SELECT CASE WHEN instance.replaced THEN 'instance.replaced' ELSE 'instance.stored' END,
               ${input.callingAet}, ${header.studyInstanceUid}, ${header.sopInstanceUid},
               jsonb_set(${details}::jsonb, '{revision}', to_jsonb(study.revision))
        FROM study, instance
      )
      SELECT study.id::text AS "studyId", study.revision, instance.replaced
      FROM study, instance`;
    if (!row) throw new Error("ingest statement returned no row");
    if (row.replaced) {
      return { kind: "replaced", studyId: row.studyId, revision: row.revision, limitNotes };
    }
    return { kind: "stored", studyId: row.studyId, revision: row.revision, limitNotes };
  } catch (error) {
    // Not recorded, so not acknowledged: the peer sends it again. (A replaced object's old bytes
    // were overwritten by the rename; the resend restores a consistent pair.)
    if (spoolPath) await rm(spoolPath, { force: true });
    throw error;
  }
}

/**
 * Counts a resend of the object (same UID, same digest) and returns its study's id; undefined for
 * an object not seen before. A row of the same UID and size recorded by a version that hashed with
 * SHA-256 is answered in the same statement; only then is the object hashed again the old way, so
 * the PACS resending an old study after an upgrade does not have it graded again.
 */
async function countDuplicate(
  sql: Sql,
  input: IngestInput,
  header: RadiographHeader,
  file: SpooledFile,
): Promise<string | undefined> {
  const count = (digest: string) => sql<{ studyId: string | null; legacy: string | null }>`
    WITH dup AS (
      UPDATE "Instance" SET "duplicateCount" = "duplicateCount" + 1
      WHERE "sopInstanceUid" = ${header.sopInstanceUid} AND digest = ${digest}
      RETURNING "studyId"
    ), audit AS (
      INSERT INTO "AuditEvent" (event, actor, "studyInstanceUid", "sopInstanceUid")
      SELECT 'instance.duplicate', ${input.callingAet}, ${header.studyInstanceUid}, ${header.sopInstanceUid}
      FROM dup
    )
    SELECT "studyId"::text AS "studyId", NULL::text AS legacy FROM dup
    UNION ALL
    SELECT NULL, digest FROM "Instance"
    WHERE "sopInstanceUid" = ${header.sopInstanceUid} AND "sizeBytes" = ${BigInt(file.sizeBytes)}
      AND starts_with(digest, ${LEGACY_DIGEST_PREFIX}) AND NOT EXISTS (SELECT 1 FROM dup)`;
  const [row] = await count(file.digest);
  if (row?.studyId) return row.studyId;
  if (!row?.legacy) return undefined;
  const bytes = file.whole ?? (await readFile(file.tmpPath));
  if (legacyInstanceDigest(bytes) !== row.legacy) return undefined;
  const [again] = await count(row.legacy);
  return again?.studyId ?? undefined;
}
