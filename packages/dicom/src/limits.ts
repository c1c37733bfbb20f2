/**
 * The length and format limits of the value representations (PS3.5 6.2) that kneegrade stores and
 * writes. A header may break them (a 70-character Patient Name, a StudyDate "2026112712"); what
 * kneegrade keeps and copies into its own objects must not, or the DICOM writer refuses the report
 * and a PACS may refuse the object. Lengths are counted in UTF-8 bytes, as the reports are written
 * in ISO_IR 192: PS3.5 counts characters, validators such as dciodvfy bytes; this satisfies both.
 */

export type Vr =
  | "AE"
  | "AS"
  | "CS"
  | "DA"
  | "DS"
  | "DT"
  | "IS"
  | "LO"
  | "LT"
  | "PN"
  | "SH"
  | "ST"
  | "TM"
  | "UI";

/** What was done to a value to bring it within its VR, and the rule it broke — never the value. */
export interface VrFix {
  action: "truncated" | "dropped";
  rule: string;
}

export interface VrClamped {
  /** The value within the VR's limits; undefined when nothing valid was left. */
  value: string | undefined;
  /** Present when the value had to change. */
  fix?: VrFix;
}

/** Maximum length in bytes of the text VRs that are truncated (a prefix keeps its meaning). */
const MAX_BYTES: Partial<Record<Vr, number>> = {
  AE: 16,
  CS: 16,
  LO: 64,
  LT: 10240,
  SH: 16,
  ST: 1024,
};

/** A prefix of `value` of at most `max` UTF-8 bytes, never cut inside a character. */
export function truncateUtf8(value: string, max: number): string {
  if (Buffer.byteLength(value, "utf8") <= max) return value;
  let out = "";
  let bytes = 0;
  for (const ch of value) {
    bytes += Buffer.byteLength(ch, "utf8");
    if (bytes > max) break;
    out += ch;
  }
  return out;
}

const daysInMonth = (year: number, month: number) =>
  new Date(Date.UTC(year, month, 0)).getUTCDate();

function validDate(v: string): boolean {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(v);
  if (!m) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month);
}

function validTime(v: string): boolean {
  const m = /^(\d{2})(?:(\d{2})(?:(\d{2})(?:\.\d{1,6})?)?)?$/.exec(v);
  if (!m) return false;
  return Number(m[1]) <= 23 && Number(m[2] ?? 0) <= 59 && Number(m[3] ?? 0) <= 60;
}

/**
 * VRs whose values cannot be shortened without changing what they say (a date, a number, a UID):
 * a value that breaks the rule is dropped, with the rule in words.
 */
const FORMATS: Partial<Record<Vr, { valid: (v: string) => boolean; rule: string }>> = {
  AS: { valid: (v) => /^\d{3}[DWMY]$/.test(v), rule: "AS: nnnD, nnnW, nnnM or nnnY" },
  DA: { valid: validDate, rule: "DA: a calendar date YYYYMMDD" },
  DS: {
    valid: (v) => v.length <= 16 && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v),
    rule: "DS: a decimal number of at most 16 characters",
  },
  DT: {
    valid: (v) =>
      v.length <= 26 &&
      /^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$/.test(v),
    rule: "DT: YYYYMMDDHHMMSS.FFFFFF&ZZXX, at most 26 characters",
  },
  IS: {
    valid: (v) => v.length <= 12 && /^[+-]?\d+$/.test(v) && Math.abs(Number(v)) <= 2 ** 31,
    rule: "IS: an integer of at most 12 characters",
  },
  TM: { valid: validTime, rule: "TM: HHMMSS.FFFFFF, a valid time of day" },
  UI: {
    valid: (v) => v.length <= 64 && /^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$/.test(v),
    rule: "UI: a UID of at most 64 characters",
  },
};

/** One Person Name value: at most 3 component groups of at most 5 components and 64 bytes each. */
function clampPersonName(value: string): { value: string; rule?: string } {
  let rule: string | undefined;
  let groups = value.split("=");
  if (groups.length > 3) {
    groups = groups.slice(0, 3);
    rule = "PN: at most 3 component groups";
  }
  groups = groups.map((group) => {
    let g = group;
    const components = g.split("^");
    if (components.length > 5) {
      g = components.slice(0, 5).join("^");
      rule ??= "PN: at most 5 components per component group";
    }
    if (Buffer.byteLength(g, "utf8") > 64) {
      // A cut name keeps its leading components (family, given): still the patient's name.
      g = truncateUtf8(g, 64).replace(/[\s^]+$/, "");
      rule ??= "PN: at most 64 bytes per component group";
    }
    return g;
  });
  return { value: groups.join("=").replace(/=+$/, ""), ...(rule ? { rule } : {}) };
}

/** One value (no backslash) of a VR: within its limits, or undefined; and the rule it broke. */
function clampOne(vr: Vr, value: string): { value: string | undefined; fix?: VrFix } {
  const format = FORMATS[vr];
  if (format) {
    const v = value.trim();
    return format.valid(v)
      ? { value: v }
      : { value: undefined, fix: { action: "dropped", rule: format.rule } };
  }
  if (vr === "PN") {
    const pn = clampPersonName(value);
    return pn.rule ? { value: pn.value, fix: { action: "truncated", rule: pn.rule } } : { value };
  }
  const max = MAX_BYTES[vr] ?? Number.POSITIVE_INFINITY;
  if (Buffer.byteLength(value, "utf8") <= max) return { value };
  return {
    value: truncateUtf8(value, max).trimEnd(),
    fix: { action: "truncated", rule: `${vr}: at most ${max} bytes` },
  };
}

/**
 * `value` brought within the limits of `vr`: text is truncated (a prefix of a name or an ID still
 * names the same thing), a malformed date, time, number or UID is dropped. Multiple values
 * (backslash-separated) are held to the limits each; ST and LT have a single value. Pure: the
 * caller decides what to log, and logs `fix` only — never the value.
 */
export function clampToVr(vr: Vr, value: string | undefined): VrClamped {
  if (value === undefined || value === "") return { value: undefined };
  const values = vr === "ST" || vr === "LT" ? [value] : value.split("\\");
  let fix: VrFix | undefined;
  const kept: string[] = [];
  for (const one of values) {
    const clamped = clampOne(vr, one);
    if (clamped.fix && !fix) fix = clamped.fix;
    if (clamped.value !== undefined) kept.push(clamped.value);
  }
  const joined = kept.join("\\");
  const result = joined.trim() === "" ? undefined : joined;
  return fix ? { value: result, fix } : { value: result };
}

/** The attributes kneegrade stores or writes from a received header, with their tags and VRs. */
export const HEADER_VRS = {
  AccessionNumber: ["(0008,0050)", "SH"],
  BodyPartExamined: ["(0018,0015)", "CS"],
  ImageLaterality: ["(0020,0062)", "CS"],
  IssuerOfPatientID: ["(0010,0021)", "LO"],
  Laterality: ["(0020,0060)", "CS"],
  Modality: ["(0008,0060)", "CS"],
  PatientBirthDate: ["(0010,0030)", "DA"],
  PatientID: ["(0010,0020)", "LO"],
  PatientName: ["(0010,0010)", "PN"],
  PatientOrientation: ["(0020,0020)", "CS"],
  PatientSex: ["(0010,0040)", "CS"],
  ProtocolName: ["(0018,1030)", "LO"],
  ReferringPhysicianName: ["(0008,0090)", "PN"],
  RequestedProcedureDescription: ["(0032,1060)", "LO"],
  SeriesDescription: ["(0008,103E)", "LO"],
  StudyDate: ["(0008,0020)", "DA"],
  StudyDescription: ["(0008,1030)", "LO"],
  StudyID: ["(0020,0010)", "SH"],
  StudyTime: ["(0008,0030)", "TM"],
  ViewPosition: ["(0018,5101)", "CS"],
} as const satisfies Record<string, readonly [string, Vr]>;

export type HeaderKeyword = keyof typeof HEADER_VRS;

/** A header value that had to change to fit its VR: which attribute, and why — not the value. */
export interface LimitNote extends VrFix {
  tag: string;
  keyword: HeaderKeyword;
  vr: Vr;
}

/** {@link clampToVr} for a named attribute, with the note to log or audit when it changed. */
export function clampAttribute(
  keyword: HeaderKeyword,
  value: string | undefined,
): { value: string | undefined; note?: LimitNote } {
  const [tag, vr] = HEADER_VRS[keyword];
  const clamped = clampToVr(vr, value);
  if (!clamped.fix) return { value: clamped.value };
  return { value: clamped.value, note: { tag, keyword, vr, ...clamped.fix } };
}
