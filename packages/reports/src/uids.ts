import { createHash } from "node:crypto";

/**
 * A UID derived deterministically from `seed` and `label`: "2.25." followed by the decimal value of
 * a UUID (PS3.5 B.2) built from the first 16 bytes of sha256(seed + "\n" + label), with the UUID
 * version (8, "custom") and variant bits set. At most 44 characters (2.25. + 39 digits), so it
 * stays valid whatever the seed. The same seed and label always give the same UID, so a retried
 * write produces the same objects.
 */
export function derivedUid(seed: string, label: string): string {
  const bytes = createHash("sha256").update(`${seed}\n${label}`, "utf8").digest().subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x80; // version 8
  bytes[8] = (bytes[8]! & 0x3f) | 0x80; // RFC 4122/9562 variant
  return `2.25.${BigInt(`0x${bytes.toString("hex")}`).toString(10)}`;
}

/** The UIDs of the objects written besides the Comprehensive SR, derived from the report's UIDs. */
export interface DerivedUids {
  /** Basic Text SR: in the Comprehensive SR's series, its own SOP Instance UID. */
  basicTextSr: { seriesInstanceUid: string; sopInstanceUid: string };
  /** Secondary capture: its own series (Modality OT) and SOP Instance UID. */
  secondaryCapture: { seriesInstanceUid: string; sopInstanceUid: string };
}

export function derivedUids(input: {
  seriesInstanceUid: string;
  sopInstanceUid: string;
}): DerivedUids {
  return {
    basicTextSr: {
      seriesInstanceUid: input.seriesInstanceUid,
      sopInstanceUid: derivedUid(input.sopInstanceUid, "basic-text-sr"),
    },
    secondaryCapture: {
      seriesInstanceUid: derivedUid(input.seriesInstanceUid, "secondary-capture-series"),
      sopInstanceUid: derivedUid(input.sopInstanceUid, "secondary-capture"),
    },
  };
}

/** A valid UID (PS3.5 9.1): ≤ 64 characters, digits and dots, no empty or zero-led component. */
export function isValidUid(uid: string): boolean {
  return uid.length <= 64 && /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/.test(uid);
}
