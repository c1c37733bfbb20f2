/**
 * A study as the pages read it from PostgreSQL: its current graded revision with its results,
 * signatures and deliveries, the sizes of its radiographs, the images the AI did not grade, and
 * the patient's earlier studies.
 */
import type { Db } from "@kneegrade/db";
import { byReadingOrder } from "@kneegrade/dicom-writers";
import { imageSize } from "./images.ts";
import { missingKnees, type Side } from "./missing.ts";

/** The study's current graded revision with everything the page and the signature need. */
export async function loadStudy(db: Db, studyInstanceUid: string) {
  const study = await db.study.findUnique({ where: { studyInstanceUid } });
  if (!study) return null;
  const job = await db.gradingJob.findFirst({
    where: { studyId: study.id, revision: study.revision, status: "COMPLETED" },
    include: {
      results: { include: { instance: true }, orderBy: { createdAt: "asc" } },
      instances: { include: { instance: true }, orderBy: { createdAt: "asc" } },
      reviews: {
        include: { knees: true, missingKnees: true, user: true },
        orderBy: { sequence: "desc" },
      },
      // Its deliveries: the PACS's and, when configured, the RIS's (FHIR, HL7: docs/INTEGRATION.md).
      reports: { include: { deliveries: true } },
    },
  });
  if (!job || job.results.length === 0) return { study, job: null } as const;
  const results = byReadingOrder(job.results);
  return { study, job: { ...job, results }, missing: missingKnees({ ...job, results }) } as const;
}
export type LoadedStudy = NonNullable<Awaited<ReturnType<typeof loadStudy>>>;

/** Original pixel size of each radiograph shown (by instance id), read from the spooled headers. */
export async function loadImageSizes(
  s: LoadedStudy,
): Promise<Map<string, { width: number; height: number }>> {
  const sizes = new Map<string, { width: number; height: number }>();
  if (!s.job) return sizes;
  for (const r of s.job.results) {
    if (sizes.has(r.instance.id) || !r.instance.spoolPath) continue;
    const size = await imageSize(r.instance.spoolPath);
    if (size) sizes.set(r.instance.id, size);
  }
  return sizes;
}

/** An image of the study the AI did not grade: refused (e.g. a lateral view) or unreadable. */
export interface UngradedImage {
  sopInstanceUid: string;
  viewPosition: string | null;
  imageLaterality: string | null;
  outcome: "REFUSED" | "FAILED" | "NOT_KNEE";
  reason: string;
}

/**
 * The study's images that have no grade: REFUSED or FAILED in the current revision's grading, and
 * instances the listener routed away as not knee radiographs (a study of only those has no
 * grading at all).
 */
export async function loadUngradedImages(db: Db, s: LoadedStudy): Promise<UngradedImage[]> {
  const job =
    s.job ??
    (await db.gradingJob.findFirst({
      where: { studyId: s.study.id, revision: s.study.revision },
      include: { instances: { include: { instance: true }, orderBy: { createdAt: "asc" } } },
      orderBy: { createdAt: "desc" },
    }));
  const out: UngradedImage[] = [];
  const seen = new Set<string>();
  for (const g of job?.instances ?? []) {
    seen.add(g.instanceId);
    if (g.outcome === "GRADED") continue;
    out.push({
      sopInstanceUid: g.instance.sopInstanceUid,
      viewPosition: g.instance.viewPosition,
      imageLaterality: g.instance.imageLaterality,
      outcome: g.outcome,
      reason: g.reason ?? g.code ?? "not graded",
    });
  }
  const notKnee = await db.instance.findMany({
    where: { studyId: s.study.id, routing: "NOT_KNEE" },
    orderBy: { receivedAt: "asc" },
  });
  for (const i of notKnee) {
    if (seen.has(i.id)) continue;
    out.push({
      sopInstanceUid: i.sopInstanceUid,
      viewPosition: i.viewPosition,
      imageLaterality: i.imageLaterality,
      outcome: "NOT_KNEE",
      reason: i.routingReason,
    });
  }
  return out;
}

export interface Prior {
  studyInstanceUid: string;
  studyDate: string | null;
  accessionNumber: string | null;
  /** The latest signature's grades (null: not gradable), else the AI's. */
  signedBy: string | null;
  knees: { laterality: Side; grade: number | null; kneeResultId: string }[];
}

/**
 * Earlier studies of the same patient (same Patient ID), newest first, with the final grade per
 * knee: the latest signature's where one exists, else the AI's (and said so).
 */
export async function loadPriors(
  db: Db,
  study: { id: string; patientId: string | null; studyDate: string | null; firstReceivedAt: Date },
  limit = 5,
): Promise<Prior[]> {
  const patientId = study.patientId?.trim();
  if (!patientId) return [];
  const others = await db.study.findMany({
    where: { patientId, id: { not: study.id } },
    orderBy: [{ studyDate: "desc" }, { firstReceivedAt: "desc" }],
    take: 50,
  });
  const earlier = others.filter((o) =>
    o.studyDate && study.studyDate && o.studyDate !== study.studyDate
      ? o.studyDate < study.studyDate
      : o.firstReceivedAt < study.firstReceivedAt,
  );
  const priors: Prior[] = [];
  for (const o of earlier.slice(0, limit)) {
    const job = await db.gradingJob.findFirst({
      where: { studyId: o.id, revision: o.revision, status: "COMPLETED" },
      include: {
        results: true,
        reviews: {
          include: { knees: true, user: true },
          orderBy: { sequence: "desc" },
          take: 1,
        },
      },
    });
    if (!job || job.results.length === 0) continue;
    const review = job.reviews[0];
    priors.push({
      studyInstanceUid: o.studyInstanceUid,
      studyDate: o.studyDate,
      accessionNumber: o.accessionNumber,
      signedBy: review ? review.user.displayName : null,
      knees: byReadingOrder(job.results).map((r) => {
        const k = review?.knees.find((x) => x.kneeResultId === r.id);
        return {
          laterality: r.laterality,
          grade: k ? k.radiologistGrade : r.klGrade,
          kneeResultId: r.id,
        };
      }),
    });
  }
  return priors;
}
