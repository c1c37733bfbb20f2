/** UIDs from DICOM PS3.4 (SOP classes) and PS3.5 (transfer syntaxes) that kneegrade deals in. */
import { createHash, randomUUID } from "node:crypto";

import { STORAGE_SOP_CLASS_NAMES } from "./sop-class-names.ts";

export const SOP_CLASSES = {
  verification: "1.2.840.10008.1.1",
  computedRadiography: "1.2.840.10008.5.1.4.1.1.1",
  digitalXRayForPresentation: "1.2.840.10008.5.1.4.1.1.1.1",
  digitalXRayForProcessing: "1.2.840.10008.5.1.4.1.1.1.1.1",
  comprehensiveSR: "1.2.840.10008.5.1.4.1.1.88.33",
} as const;

/** The radiograph storage SOP classes the listener accepts (CR; DX for presentation/processing). */
export const RADIOGRAPH_SOP_CLASSES: readonly string[] = [
  SOP_CLASSES.computedRadiography,
  SOP_CLASSES.digitalXRayForPresentation,
  SOP_CLASSES.digitalXRayForProcessing,
];

export const TRANSFER_SYNTAXES = {
  implicitVrLittleEndian: "1.2.840.10008.1.2",
  explicitVrLittleEndian: "1.2.840.10008.1.2.1",
  explicitVrBigEndian: "1.2.840.10008.1.2.2",
  jpegBaseline: "1.2.840.10008.1.2.4.50",
  jpegExtended: "1.2.840.10008.1.2.4.51",
  jpegLossless: "1.2.840.10008.1.2.4.57",
  jpegLosslessSv1: "1.2.840.10008.1.2.4.70",
  jpegLsLossless: "1.2.840.10008.1.2.4.80",
  jpegLsNearLossless: "1.2.840.10008.1.2.4.81",
  jpeg2000Lossless: "1.2.840.10008.1.2.4.90",
  jpeg2000: "1.2.840.10008.1.2.4.91",
  rleLossless: "1.2.840.10008.1.2.5",
} as const;

/**
 * Transfer syntaxes accepted as they arrive (no re-encoding on the way in). Order is only a
 * tie-breaker: the listener takes the first syntax *the peer* proposes that is in this list.
 */
export const ACCEPTED_TRANSFER_SYNTAXES: readonly string[] = [
  TRANSFER_SYNTAXES.explicitVrLittleEndian,
  TRANSFER_SYNTAXES.implicitVrLittleEndian,
  TRANSFER_SYNTAXES.jpegLosslessSv1,
  TRANSFER_SYNTAXES.jpegLossless,
  TRANSFER_SYNTAXES.jpegBaseline,
  TRANSFER_SYNTAXES.jpegExtended,
  TRANSFER_SYNTAXES.jpegLsLossless,
  TRANSFER_SYNTAXES.jpegLsNearLossless,
  TRANSFER_SYNTAXES.jpeg2000Lossless,
  TRANSFER_SYNTAXES.jpeg2000,
  TRANSFER_SYNTAXES.rleLossless,
];

/**
 * The UID grammar of PS3.5 9.1: at most 64 characters, components of digits separated by single
 * dots, no component with a leading zero (a lone "0" is allowed). Every UID that reaches a path, a
 * queue key or a query is checked against it first: a peer's bytes are hostile until they pass.
 */
export const DICOM_UID_PATTERN = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

export function isDicomUid(value: unknown): value is string {
  return typeof value === "string" && value.length <= 64 && DICOM_UID_PATTERN.test(value);
}

/** Transfer syntaxes whose Pixel Data is native (defined length); all others encapsulate it. */
export const NATIVE_TRANSFER_SYNTAXES: readonly string[] = [
  "1.2.840.10008.1.2",
  "1.2.840.10008.1.2.1",
  "1.2.840.10008.1.2.1.99",
  "1.2.840.10008.1.2.2",
];

/** Root of UIDs kneegrade generates (UUID-derived, PS3.5 B.2). */
export const UUID_UID_ROOT = "2.25";

/** Implementation identity written into File Meta Information (PS3.7 D.3.3.2). */
export const IMPLEMENTATION_CLASS_UID = "2.25.182466127404213457094591217318240871233";
export const IMPLEMENTATION_VERSION_NAME = "KNEEGRADE_01";

/**
 * A UID that is the same every time for the same name: "2.25." followed by the decimal value of a
 * UUID (PS3.5 B.2) built from the first 16 bytes of sha256(name), with the UUID version (8,
 * "custom") and variant bits set; at most 44 characters. Used for the objects kneegrade writes per
 * study revision, so a retried write reproduces the same UIDs and the PACS never receives two
 * reports for one revision.
 */
export function uidFromName(name: string): string {
  const bytes = createHash("sha256").update(name, "utf8").digest().subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x80; // version 8
  bytes[8] = (bytes[8]! & 0x3f) | 0x80; // RFC 4122/9562 variant
  return `${UUID_UID_ROOT}.${BigInt(`0x${bytes.toString("hex")}`).toString(10)}`;
}

/** A new, random UID: "2.25." followed by the decimal value of a random (version 4) UUID. */
export function randomUid(): string {
  return `${UUID_UID_ROOT}.${BigInt(`0x${randomUUID().replace(/-/g, "")}`).toString(10)}`;
}

/** A storage SOP class's name ("Comprehensive SR Storage"), or its UID when it has none here. */
export function sopClassName(uid: string | undefined): string {
  if (!uid) return "no SOP Class UID";
  return STORAGE_SOP_CLASS_NAMES[uid] ?? uid;
}

/** Explicit VRs whose element header has two reserved bytes and a 32-bit length (PS3.5 7.1.2). */
export const LONG_LENGTH_VRS: ReadonlySet<string> = new Set([
  "OB",
  "OD",
  "OF",
  "OL",
  "OV",
  "OW",
  "SQ",
  "SV",
  "UC",
  "UN",
  "UR",
  "UT",
  "UV",
]);
