/** Where tests find the shared, read-only data set (never copied into the repository). */
import { SHARED_DATA } from "@kneegrade/sample-radiographs";

export { REPO_ROOT, SHARED_DATA } from "@kneegrade/sample-radiographs";
export const WG04_DIR = `${SHARED_DATA}dicom/wg04/`;

/** The storescu option that proposes each WG04 file's own transfer syntax. */
export const WG04_FILES = {
  "RG3_UNC.dcm": [],
  "RG3_JPLL.dcm": ["-xs"],
  "RG3_JPLY.dcm": ["-xx"],
  "RG3_JLSL.dcm": ["-xt"],
  "RG3_JLSN.dcm": ["-xu"],
  "RG3_J2KR.dcm": ["-xv"],
  "RG3_J2KI.dcm": ["-xw"],
  "RG3_RLE.dcm": ["-xr"],
} as const satisfies Record<string, string[]>;
export type Wg04File = keyof typeof WG04_FILES;
