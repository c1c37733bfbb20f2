/**
 * Which knee is which. The header says it when it can: ImageLaterality (0020,0062) or Laterality
 * (0020,0060) for a single knee; PatientOrientation (0020,0020) gives the patient direction of the
 * image rows, so on a bilateral image the knee nearer the side the rows point to is that side's
 * knee. Without PatientOrientation a bilateral image is read in the radiographic display
 * convention (AP: the patient's right on the viewer's left), and the result says it was assumed.
 */
export type Side = "R" | "L";

export interface LateralityHeader {
  imageLaterality?: string | undefined;
  laterality?: string | undefined;
  /** "L\F", "R\F", "A\F", … */
  patientOrientation?: string | undefined;
}

export interface AssignedLaterality {
  laterality: Side | "U";
  /** Where it came from, in words a reviewer understands. */
  source: string;
  /** True when the side rests on a convention, not on the header. */
  assumed: boolean;
}

/** The patient direction that column index increases towards: "L", "R", or undefined. */
export function rowDirection(patientOrientation: string | undefined): Side | undefined {
  const first = patientOrientation?.split("\\")[0]?.trim().toUpperCase();
  if (!first) return undefined;
  const l = first.includes("L");
  const r = first.includes("R");
  if (l === r) return undefined; // neither (anterior/posterior) or contradictory
  return l ? "L" : "R";
}

const side = (v: string | undefined): Side | undefined => {
  const t = v?.trim().toUpperCase();
  return t === "R" || t === "L" ? t : undefined;
};

/**
 * Laterality of each found knee, given their centres' x (pixels) and the image width. `knees` may
 * hold one or two entries; the result is in the same order.
 */
export function assignLaterality(
  knees: { cx: number }[],
  imageWidth: number,
  header: LateralityHeader,
): AssignedLaterality[] {
  const rows = rowDirection(header.patientOrientation);
  const declared = side(header.imageLaterality) ?? side(header.laterality);
  const declaredSource = side(header.imageLaterality) ? "ImageLaterality" : "Laterality";
  // The side a knee is on, from its image position: towards where the rows point = that side.
  const fromPosition = (cx: number, mid: number): AssignedLaterality => {
    const towardsRowEnd = cx > mid;
    if (rows) {
      const opposite: Side = rows === "L" ? "R" : "L";
      return {
        laterality: towardsRowEnd ? rows : opposite,
        source: `image side and PatientOrientation (rows towards the patient's ${rows === "L" ? "left" : "right"})`,
        assumed: false,
      };
    }
    return {
      laterality: towardsRowEnd ? "L" : "R",
      source: "image side, assuming the AP display convention (no PatientOrientation)",
      assumed: true,
    };
  };
  if (knees.length >= 2) {
    const mid = (Math.min(...knees.map((k) => k.cx)) + Math.max(...knees.map((k) => k.cx))) / 2;
    return knees.map((k) => fromPosition(k.cx, mid));
  }
  return knees.map((k) => {
    if (declared) return { laterality: declared, source: declaredSource, assumed: false };
    // One knee, no declared side: its position tells only when it is clearly off-centre.
    if (rows && Math.abs(k.cx - imageWidth / 2) > 0.15 * imageWidth) {
      return fromPosition(k.cx, imageWidth / 2);
    }
    return {
      laterality: "U",
      source: "not in the header, and the image side is ambiguous",
      assumed: false,
    };
  });
}
