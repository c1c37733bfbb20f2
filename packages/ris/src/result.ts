/**
 * A study revision's result as the RIS receives it: what one SR says (the AI's, or a radiologist's
 * signed revision), gathered from PostgreSQL and a graded image's header in the spool, in the
 * shape the FHIR and HL7 writers share. Patient data is read here and only written into the
 * messages: never logged.
 */
import type { Config } from "@kneegrade/config";
import type { Db } from "@kneegrade/db";
import {
  type KneeDecision,
  type KneeFinding,
  type ReportInput,
  reportText,
  type SourceImage,
  type StudyContext,
  trackingUid,
} from "@kneegrade/dicom-writers";
import { buildReportInputWithIds } from "@kneegrade/report-jobs";

export type ResultStatus = "preliminary" | "final" | "amended";

export interface ResultKnee {
  laterality: KneeFinding["laterality"];
  aiGrade: number;
  probabilities: number[];
  /** The SR's Tracking UID of this knee: the same in the AI's SR and every signed revision. */
  trackingUid: string;
  source: SourceImage;
  /** The radiologist's decision (signed results only). */
  decision?: KneeDecision;
}

export interface ResultImage extends SourceImage {
  modality: string;
  instanceNumber?: number;
}

export interface StudyResult {
  /** preliminary: the AI's result; final: the first signature; amended: a later one. */
  status: ResultStatus;
  /** The SR this result is (its SOP Instance UID). */
  reportSopInstanceUid: string;
  /** The AI SR of the revision: the identity of the report across its statuses. */
  aiSrSopInstanceUid: string;
  /** When the result was made: grading finished, or the signature. */
  issued: Date;
  context: StudyContext;
  knees: ResultKnee[];
  /** The graded images (the knees' sources), in the order graded. */
  images: ResultImage[];
  /** The report text: findings and impression, one statement per line. */
  findings: string;
  impression: string;
  algorithm: ReportInput["algorithm"];
  deviceObserverUid: string;
  /** The signing radiologist (PN "Family^Given") and organisation. */
  radiologist?: { name: string; organisation: string };
  institutionName?: string;
}

type ResultConfig = Pick<Config, "DEVICE_OBSERVER_UID" | "LISTENER_AET" | "INSTITUTION_NAME">;

/**
 * The result of one SR `Report` row: the AI's (unverified) or a signature's (verified, with the
 * `Review` whose signed SR it is).
 */
export async function buildStudyResult(
  db: Db,
  report: { gradingJobId: string | null; sopInstanceUid: string; verified: boolean },
  config: ResultConfig,
): Promise<StudyResult> {
  if (!report.gradingJobId) throw new Error(`report ${report.sopInstanceUid} has no grading job`);
  const { input, kneeResultIds } = await buildReportInputWithIds(db, report.gradingJobId, config);
  const job = await db.gradingJob.findUniqueOrThrow({
    where: { id: report.gradingJobId },
    include: { instances: { include: { instance: { include: { series: true } } } } },
  });
  const review = report.verified
    ? await db.review.findUnique({
        where: { sopInstanceUid: report.sopInstanceUid },
        include: { knees: true, user: true },
      })
    : null;
  if (report.verified && !review) {
    throw new Error(`signed report ${report.sopInstanceUid} has no review`);
  }
  const knees: ResultKnee[] = input.knees.map((k, i) => {
    const decision = review?.knees.find((d) => d.kneeResultId === kneeResultIds[i]);
    return {
      laterality: k.laterality,
      aiGrade: k.grade,
      probabilities: k.probabilities,
      trackingUid: trackingUid(k, input.knees),
      source: k.source,
      ...(decision
        ? {
            decision:
              decision.radiologistGrade === null
                ? { grade: null, notGradableReason: decision.notGradableReason ?? "" }
                : { grade: decision.radiologistGrade },
          }
        : {}),
    };
  });
  const graded = new Set(input.knees.map((k) => k.source.sopInstanceUid));
  const images: ResultImage[] = job.instances
    .filter((g) => graded.has(g.instance.sopInstanceUid))
    .map((g) => ({
      sopClassUid: g.instance.sopClassUid,
      sopInstanceUid: g.instance.sopInstanceUid,
      seriesInstanceUid: g.instance.series.seriesInstanceUid,
      modality: g.instance.series.modality ?? "DX",
    }));
  const text = review
    ? { findings: review.findings, impression: review.impression }
    : reportText(input);
  return {
    status: review ? (review.sequence === 1 ? "final" : "amended") : "preliminary",
    reportSopInstanceUid: report.sopInstanceUid,
    aiSrSopInstanceUid: input.sopInstanceUid,
    issued: review ? review.signedAt : input.contentDateTime,
    context: input.context,
    knees,
    images,
    findings: text.findings,
    impression: text.impression,
    algorithm: input.algorithm,
    deviceObserverUid: input.deviceObserverUid,
    ...(review
      ? { radiologist: { name: review.user.displayName, organisation: review.user.organisation } }
      : {}),
    ...(input.institutionName ? { institutionName: input.institutionName } : {}),
  };
}

/** The report text as one block: findings, a blank line, the impression. */
export const resultText = (r: Pick<StudyResult, "findings" | "impression">) =>
  [`Findings:\n${r.findings.trim()}`, `Impression:\n${r.impression.trim()}`].join("\n\n");

/** The grade a result reports for a knee: the radiologist's when signed, else the AI's. */
export function reportedGrade(knee: ResultKnee): number | null {
  return knee.decision ? knee.decision.grade : knee.aiGrade;
}

/**
 * DICOM DA → FHIR date; undefined when absent or malformed. (A DICOM time carries no zone, which a
 * FHIR dateTime with a time requires: the date alone is what is known exactly.)
 */
export function fhirDate(da?: string): string | undefined {
  const d = /^(\d{4})(\d{2})(\d{2})$/.exec(da ?? "");
  return d ? `${d[1]}-${d[2]}-${d[3]}` : undefined;
}
