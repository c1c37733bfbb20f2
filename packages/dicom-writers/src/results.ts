/**
 * Grading results as PostgreSQL stores them (a `KneeResult` row, a `GradingJob`'s model fields) →
 * the writers' inputs. Shapes only, no database access: the reporter and the review pages map rows
 * the same way.
 */
import { readFileSync } from "node:fs";
import type { KneeFinding, ReportInput, SourceImage } from "./types.ts";

/** kneegrade's version (the root package.json, in the sources and in the image alike). */
export const SOFTWARE_VERSION: string = JSON.parse(
  readFileSync(new URL("../../../package.json", import.meta.url), "utf8"),
).version;

export interface KneeResultRow {
  laterality: "RIGHT" | "LEFT" | "UNKNOWN";
  lateralitySource: string | null;
  klGrade: number;
  probabilities: unknown;
  localisationScore: number | null;
  lowConfidence: boolean;
  region: unknown;
  cropPng: Uint8Array | null;
  heatmapPng: Uint8Array | null;
}

/** PostgreSQL's laterality → the report writers' side code. */
export const SIDE_CODE = { RIGHT: "R", LEFT: "L", UNKNOWN: "U" } as const;
const ORDER = { RIGHT: 0, LEFT: 1, UNKNOWN: 2 } as const;

/** Right, left, side unknown (stable): the order of the report. */
export const byReadingOrder = <T extends Pick<KneeResultRow, "laterality">>(rows: T[]): T[] =>
  [...rows].sort((a, b) => ORDER[a.laterality] - ORDER[b.laterality]);

export function kneeFinding(r: KneeResultRow, source: SourceImage): KneeFinding {
  return {
    laterality: SIDE_CODE[r.laterality],
    lateralitySource: r.lateralitySource ?? "",
    grade: r.klGrade,
    probabilities: r.probabilities as number[],
    localisationScore: r.localisationScore ?? 0,
    lowConfidence: r.lowConfidence,
    source,
    region: (r.region as KneeFinding["region"]) ?? null,
    ...(r.cropPng ? { cropPng: new Uint8Array(r.cropPng) } : {}),
    ...(r.heatmapPng ? { heatmapPng: new Uint8Array(r.heatmapPng) } : {}),
  };
}

export function algorithmOf(job: {
  modelVersion: string | null;
  modelStatus: string | null;
}): ReportInput["algorithm"] {
  return {
    name: "kneegrade PIM ensemble (Kellgren-Lawrence)",
    version: job.modelVersion ?? "unknown",
    // The model version ends in the first 12 hex digits of sha256 over its members' sha256s.
    modelFingerprint: job.modelVersion?.split("-").pop() ?? "unknown",
    modelStatus: job.modelStatus ?? "unknown",
    manufacturer: "kneegrade",
    softwareVersion: SOFTWARE_VERSION,
  };
}
