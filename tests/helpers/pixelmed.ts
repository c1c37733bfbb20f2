/**
 * pixelmed's DicomSRValidator (Debian pixelmed-apps / libpixelmed-java) as a second validator
 * beside dciodvfy: it checks an SR's content tree against its templates (-checktemplateid) and
 * the order of their rows (-checkcontentitemorder), which dciodvfy does not.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { tool } from "./dcmtk.ts";

/** pixelmed.jar as Debian installs it (`dpkg -L libpixelmed-java`). */
function pixelmedJar(): string {
  try {
    const listed = execFileSync("dpkg", ["-L", "libpixelmed-java"], { encoding: "utf8" })
      .split("\n")
      .find((p) => p.endsWith("/pixelmed.jar"));
    if (listed && existsSync(listed)) return listed;
  } catch {
    // not a dpkg system: the usual place, or a clear failure below
  }
  const usual = "/usr/share/java/pixelmed.jar";
  if (existsSync(usual)) return usual;
  throw new Error("pixelmed.jar not found: install the Debian package pixelmed-apps");
}

export interface PixelmedVerdict {
  /** "ComprehensiveSR" from "Found ComprehensiveSR IOD"; undefined when pixelmed has no rules for it. */
  iod?: string;
  /** "TID_1500" from "Found Root Template TID_1500 (…)". */
  rootTemplate?: string;
  errors: string[];
  warnings: string[];
  lines: string[];
}

/** What pixelmed says while it works, and neither an error nor a warning. */
const PROGRESS = [
  /^Found (\S+) IOD$/,
  /^Found Root Template (\S+)/,
  /^Root Template Validation Complete$/,
  /^IOD validation complete$/,
  /^IOD \(SOP Class\) unrecognized$/,
];

/**
 * pixelmed's verdict on a DICOM file. Every line that is neither a warning nor progress counts as
 * an error: besides its "Error:" lines it reports broken relationships ("Parent content item …
 * has illegal relationship …") without a prefix. Throws when the validator did not run to its
 * end, so that a missing JVM never reads as a valid object.
 */
export async function pixelmedSr(file: string): Promise<PixelmedVerdict> {
  const r = await tool(
    "java",
    [
      // Without these the JDK's XPath limits stop pixelmed's XSLT validation.
      "-Djdk.xml.xpathExprOpLimit=0",
      "-Djdk.xml.xpathExprGrpLimit=0",
      "-Djdk.xml.xpathTotalOpLimit=0",
      "-cp",
      pixelmedJar(),
      "com.pixelmed.validate.DicomSRValidator",
      "-checktemplateid",
      "-checkcontentitemorder",
      file,
    ],
    300_000,
  );
  const lines = `${r.stdout}\n${r.stderr}`.split("\n").filter((l) => l.trim() !== "");
  if (
    r.code !== 0 ||
    !lines.some((l) => /^IOD (validation complete|\(SOP Class\) unrecognized)$/.test(l))
  ) {
    throw new Error(
      `pixelmed DicomSRValidator did not run on ${file} (exit ${r.code}): ${lines.join(" | ")}`,
    );
  }
  const warnings = lines.filter((l) => l.startsWith("Warning"));
  const errors = lines.filter((l) => !l.startsWith("Warning") && !PROGRESS.some((p) => p.test(l)));
  return {
    iod: lines.map((l) => /^Found (\S+) IOD$/.exec(l)?.[1]).find(Boolean),
    rootTemplate: lines.map((l) => /^Found Root Template (\S+)/.exec(l)?.[1]).find(Boolean),
    errors,
    warnings,
    lines,
  };
}

/** pixelmed's errors for an SR (none: valid for its IOD's templates). */
export async function pixelmedSrErrors(file: string): Promise<string[]> {
  return (await pixelmedSr(file)).errors;
}
