/**
 * Reading what the world sends: every file of a corpus no one here wrote — pydicom's
 * test files, the NEMA WG04 radiographs, and files with the oddities DCMTK, GDCM and PACS exports
 * write (tests/helpers/oddities.ts) — is accepted, or refused for a reason a sender can act on, by
 * the worker's reader and by the listener's checks. Nothing DCMTK reads may be refused with the
 * parser's raw words; the refusals of what DCMTK reads are named in the table with the reason
 * accepting them would be unsafe or wrong.
 *
 * The expected outcomes are the table below; docs/RELIABILITY.md carries the observed outcomes,
 * rendered from the same run (`KNEEGRADE_WRITE_DOCS=1` rewrites that section).
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closeCodecs } from "@kneegrade/pixels";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CORPUS_BEGIN,
  CORPUS_END,
  type CorpusFile,
  type CorpusRow,
  collectCorpus,
  dcmdumpReads,
  listenerVerdict,
  readerVerdict,
  renderCorpusTable,
  type Verdict,
} from "../helpers/corpus.ts";
import { REPO_ROOT } from "../helpers/paths.ts";

/** Accepted, or refused with this code and a reason matching the pattern. */
type Expected = "accepted" | [code: string, reason: RegExp];
interface Expectation {
  /** Whether DCMTK 3.6.7's dcmdump reads the file to its end. */
  dcmdump: "reads" | "fails";
  reader: Expected;
  /** The listener's checks; absent where the file has no File Meta (nothing to spool). */
  listener?: Expected;
  /** Why a file DCMTK reads is refused, or what else a reader of the table should know. */
  note?: string;
}

const A = "accepted" as const;
/** DCMTK reads it; the reader and the listener accept it. */
const ACCEPTED: Expectation = { dcmdump: "reads", reader: A, listener: A };
const NOT_GREY = ["UNSUPPORTED_IMAGE", /^only grey images are supported/] as [string, RegExp];
const U32 = ["UNSUPPORTED_IMAGE", /^unsigned 32-bit stored values do not fit/] as [string, RegExp];
const NO_META: Expectation = {
  dcmdump: "reads",
  reader: [
    "UNREADABLE_DICOM",
    /^not a DICOM Part 10 file: no File Meta Information \(no DICM prefix/,
  ],
  note: "a bare data set: its transfer syntax would have to be guessed (DCMTK guesses)",
};
const NO_SOP_CLASS: [string, RegExp] = ["UNREADABLE_DICOM", /^missing SOPClassUID \(0008,0016\)$/];
const NO_SOP_CLASS_L: [string, RegExp] = ["A900", /^missing SOPClassUID \(0008,0016\)$/];
/** A File Meta element (group 0002, `tag`) inside the data set: DCMTK reads on, both refuse it. */
const metaInDataSet = (tag: string, note: string): Expectation => {
  const reason = new RegExp(`^File Meta Information element \\(${tag}\\) inside the data set$`);
  return {
    dcmdump: "reads",
    reader: ["UNREADABLE_DICOM", reason],
    listener: ["A900", reason],
    note,
  };
};
const notAnImage = (name: string): [string, RegExp] => [
  "NO_PIXEL_DATA",
  new RegExp(`^not an image: ${name}$`),
];

const EXPECTED: Record<string, Expectation> = {
  "pydicom/693_J2KI.dcm": ACCEPTED,
  "pydicom/CT_small.dcm": ACCEPTED,
  "pydicom/ExplVR_BigEnd.dcm": { dcmdump: "reads", reader: NOT_GREY },
  "pydicom/ExplVR_BigEndNoMeta.dcm": NO_META,
  "pydicom/ExplVR_LitEndNoMeta.dcm": NO_META,
  "pydicom/GDCMJ2K_TextGBR.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/J2K_pixelrep_mismatch.dcm": ACCEPTED,
  "pydicom/JPEG-lossy.dcm": ACCEPTED,
  "pydicom/JPEG2000-embedded-sequence-delimiter.dcm": {
    dcmdump: "reads",
    reader: ["CORRUPT_PIXEL_DATA", /^JPEG 2000 decoder \(OpenJPEG\): .*Invalid number of tiles/],
    listener: A,
    note: "its codestream's SIZ marker is invalid: GDCM (gdcmconv --raw) cannot decode it either",
  },
  "pydicom/JPEG2000.dcm": ACCEPTED,
  "pydicom/JPGExtended.dcm": ACCEPTED,
  "pydicom/MR_small.dcm": { ...ACCEPTED, note: "ends with Data Set Trailing Padding (FFFC,FFFC)" },
  "pydicom/MR_small_RLE.dcm": ACCEPTED,
  "pydicom/MR_small_bigendian.dcm": { dcmdump: "reads", reader: A },
  "pydicom/MR_small_expb.dcm": { dcmdump: "reads", reader: A },
  "pydicom/MR_small_implicit.dcm": ACCEPTED,
  "pydicom/MR_small_jp2klossless.dcm": ACCEPTED,
  "pydicom/MR_small_jpeg_ls_lossless.dcm": ACCEPTED,
  "pydicom/MR_small_padded.dcm": ACCEPTED,
  "pydicom/MR_truncated.dcm": {
    dcmdump: "fails",
    reader: [
      "CORRUPT_PIXEL_DATA",
      /^Pixel Data \(7FE0,0010\) is truncated: it declares 8192 bytes but the file ends 8130 bytes after its start/,
    ],
    listener: [
      "C000",
      /^the file is truncated: element \(7FE0,0010\) at byte \d+ declares 8192 bytes, 8130 remain$/,
    ],
  },
  "pydicom/SC_jpeg_no_color_transform.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_jpeg_no_color_transform_2.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_dcmtk_+eb+cr.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_dcmtk_+eb+cy+n1.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_dcmtk_+eb+cy+n2.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_dcmtk_+eb+cy+np.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_dcmtk_+eb+cy+s2.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_dcmtk_+eb+cy+s4.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_gdcm_KY.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_jpeg.dcm": {
    dcmdump: "fails",
    reader: [
      "UNREADABLE_DICOM",
      /^element \(0008,0008\) at byte \d+ has no VR \(bytes 18 00\) although the transfer syntax .* is explicit VR: the data set is encoded implicit VR$/,
    ],
    listener: ["C000", /^element \(0008,0008\) at byte \d+ has no VR/],
  },
  "pydicom/SC_rgb_jpeg_app14_dcmd.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_jpeg_dcmd.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_jpeg_dcmtk.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_jpeg_gdcm.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_jpeg_lossy_gdcm.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_rle.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_rle_16bit.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_rle_16bit_2frame.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_rle_2frame.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_rle_32bit.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_rle_32bit_2frame.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_small_odd.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_rgb_small_odd_jpeg.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/SC_ybr_full_422_uncompressed.dcm": { dcmdump: "reads", reader: NOT_GREY, listener: A },
  "pydicom/UN_sequence.dcm": { dcmdump: "reads", reader: NO_SOP_CLASS, listener: NO_SOP_CLASS_L },
  "pydicom/badVR.dcm": { dcmdump: "reads", reader: U32, listener: A },
  "pydicom/empty_charset_LEI.dcm": {
    dcmdump: "reads",
    reader: NO_SOP_CLASS,
    listener: NO_SOP_CLASS_L,
    note: "File Meta ends with empty (0002,0013) and (0002,0016), as GDCM writes it; no SOP Class UID",
  },
  "pydicom/image_dfl.dcm": { dcmdump: "reads", reader: A },
  "pydicom/liver_1frame.dcm": {
    dcmdump: "reads",
    reader: ["UNSUPPORTED_IMAGE", /^Bits Allocated 1 is not supported/],
    listener: A,
  },
  "pydicom/liver_expb_1frame.dcm": {
    dcmdump: "reads",
    reader: ["UNSUPPORTED_IMAGE", /^Bits Allocated 1 is not supported/],
  },
  "pydicom/meta_missing_tsyntax.dcm": {
    dcmdump: "reads",
    reader: ["UNREADABLE_DICOM", /^File Meta Information lacks Transfer Syntax UID \(0002,0010\)$/],
    note: "DCMTK assumes implicit VR little endian; so would a guess here",
  },
  "pydicom/nested_priv_SQ.dcm": {
    dcmdump: "reads",
    reader: [
      "UNREADABLE_DICOM",
      /^the data set starts with element \(0001,0001\): group 0001 may not appear in a data set \(PS3\.5 7\.8\.1\)$/,
    ],
    listener: ["C000", /^the data set starts with element \(0001,0001\): group 0001/],
    note: 'group 0001 is forbidden; dicom-parser reads it as File Meta and derails (DCMTK warns "Invalid Element"). It has no SOP Class UID either',
  },
  "pydicom/no_meta.dcm": { ...NO_META, dcmdump: "fails" },
  "pydicom/no_meta_group_length.dcm": {
    dcmdump: "reads",
    reader: NO_SOP_CLASS,
    listener: NO_SOP_CLASS_L,
  },
  "pydicom/priv_SQ.dcm": { dcmdump: "reads", reader: NO_SOP_CLASS, listener: NO_SOP_CLASS_L },
  "pydicom/reportsi.dcm": {
    dcmdump: "reads",
    reader: notAnImage("Basic Text SR Storage"),
    listener: A,
  },
  "pydicom/reportsi_with_empty_number_tags.dcm": {
    dcmdump: "reads",
    reader: notAnImage("Basic Text SR Storage"),
    listener: A,
  },
  "pydicom/rtdose.dcm": { dcmdump: "reads", reader: U32, listener: A },
  "pydicom/rtdose_1frame.dcm": { dcmdump: "reads", reader: U32, listener: A },
  "pydicom/rtdose_expb.dcm": { dcmdump: "reads", reader: U32 },
  "pydicom/rtdose_expb_1frame.dcm": { dcmdump: "reads", reader: U32 },
  "pydicom/rtdose_rle.dcm": { dcmdump: "reads", reader: U32, listener: A },
  "pydicom/rtdose_rle_1frame.dcm": { dcmdump: "reads", reader: U32, listener: A },
  "pydicom/rtplan.dcm": { dcmdump: "reads", reader: notAnImage("RT Plan Storage"), listener: A },
  "pydicom/rtplan_truncated.dcm": {
    dcmdump: "fails",
    reader: [
      "UNREADABLE_DICOM",
      /^the file is truncated: element \(300A,00B0\) at byte \d+ declares 976 bytes, 711 remain$/,
    ],
    listener: ["C000", /^the file is truncated: element \(300A,00B0\)/],
  },
  "pydicom/rtstruct.dcm": NO_META,
  "pydicom/test-SR.dcm": {
    dcmdump: "reads",
    reader: notAnImage("Comprehensive SR Storage"),
    listener: A,
  },
  "pydicom/waveform_ecg.dcm": {
    dcmdump: "reads",
    reader: notAnImage("12-lead ECG Waveform Storage"),
    listener: A,
  },
  "oddity/meta-element-in-data-set.dcm": metaInDataSet(
    "0002,0010",
    'unsafe: it would override the negotiated transfer syntax (DCMTK warns "Invalid Element")',
  ),
  "oddity/meta-empty-element-in-data-set.dcm": metaInDataSet(
    "0002,0016",
    "group 0002 belongs to the File Meta only, empty or not",
  ),
  "oddity/meta-empty-last-elements.dcm": {
    ...ACCEPTED,
    note: "File Meta ends with empty (0002,0013) and (0002,0016)",
  },
  "oddity/meta-no-group-length.dcm": ACCEPTED,
  "oddity/odd-length-values.dcm": ACCEPTED,
  "oddity/private-sequence-undefined-length-implicit.dcm": ACCEPTED,
  "oddity/private-sequence-undefined-length.dcm": ACCEPTED,
  "oddity/trailing-stray-bytes.dcm": {
    dcmdump: "fails",
    reader: [
      "CORRUPT_PIXEL_DATA",
      /^the data set could not be parsed \(.*\): 6 stray byte\(s\) after the last element, at byte \d+: too few for an element$/,
    ],
    listener: [
      "C000",
      /^6 stray byte\(s\) after the last element, at byte \d+: too few for an element$/,
    ],
  },
  "oddity/trailing-zero-bytes.dcm": {
    ...ACCEPTED,
    note: "read as empty (0000,0000) elements, by DCMTK too: zeros after the last element carry nothing",
  },
  "oddity/truncated-in-header.dcm": {
    dcmdump: "fails",
    reader: [
      "UNREADABLE_DICOM",
      /^the file is truncated: element \(0010,0010\) at byte \d+ declares 22 bytes, 8 remain$/,
    ],
    listener: ["C000", /^the file is truncated: element \(0010,0010\)/],
  },
  "oddity/truncated-in-pixel-data.dcm": {
    dcmdump: "fails",
    reader: [
      "CORRUPT_PIXEL_DATA",
      /^Pixel Data \(7FE0,0010\) is truncated: it declares 8192 bytes/,
    ],
    listener: [
      "C000",
      /^the file is truncated: element \(7FE0,0010\) at byte \d+ declares 8192 bytes, \d+ remain$/,
    ],
  },
  "oddity/un-values.dcm": ACCEPTED,
  "wg04/RG3_J2KI.dcm": ACCEPTED,
  "wg04/RG3_J2KR.dcm": ACCEPTED,
  "wg04/RG3_JLSL.dcm": ACCEPTED,
  "wg04/RG3_JLSN.dcm": ACCEPTED,
  "wg04/RG3_JPLL.dcm": ACCEPTED,
  "wg04/RG3_JPLY.dcm": ACCEPTED,
  "wg04/RG3_RLE.dcm": ACCEPTED,
  "wg04/RG3_UNC.dcm": ACCEPTED,
};

/** The parser's own words: never a reason a sender is given. */
const RAW_PARSER_TEXT =
  /dicomParser|ByteStream|buffer overrun|is not a function|maxPosition|attempt to read past/;

function matches(v: Verdict | undefined, e: Expected | undefined): boolean {
  if (e === undefined || v === undefined) return e === v;
  if (e === "accepted") return v.accepted;
  return !v.accepted && v.code === e[0] && e[1].test(v.reason);
}

describe("the DICOM corpus", () => {
  let dir: string;
  let files: CorpusFile[] = [];
  let missing: string[] = [];
  const rows: CorpusRow[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kneegrade-corpus-"));
    ({ files, missing } = await collectCorpus(dir));
    for (const m of missing) console.warn(`corpus: skipped ${m}`);
    for (const f of files) {
      const bytes = new Uint8Array(await readFile(f.path));
      rows.push({
        name: f.name,
        dcmdump: await dcmdumpReads(f.path),
        reader: await readerVerdict(bytes),
        listener: listenerVerdict(bytes),
        note: EXPECTED[f.name]?.note,
      });
    }
  }, 300_000);

  afterAll(async () => {
    await closeCodecs();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("has an expected outcome for every file, and every expected file is there", () => {
    expect(files.length).toBeGreaterThan(0);
    expect(files.map((f) => f.name).filter((n) => !(n in EXPECTED))).toEqual([]);
    const present = new Set(files.map((f) => f.name));
    const prefixes = new Set(files.map((f) => f.name.split("/")[0]));
    const absent = Object.keys(EXPECTED).filter(
      (n) => prefixes.has(n.split("/")[0]!) && !present.has(n),
    );
    expect(absent).toEqual([]);
  });

  it("accepts or refuses each file as the table says, and DCMTK agrees on what it can read", () => {
    const wrong = rows.flatMap((r) => {
      const e = EXPECTED[r.name];
      if (!e) return [];
      const problems: string[] = [];
      if ((e.dcmdump === "reads") !== r.dcmdump)
        problems.push(`dcmdump ${r.dcmdump ? "reads" : "fails"}`);
      if (!matches(r.reader, e.reader)) problems.push(`reader: ${JSON.stringify(r.reader)}`);
      if (!matches(r.listener, e.listener))
        problems.push(`listener: ${JSON.stringify(r.listener)}`);
      return problems.length ? [`${r.name}: ${problems.join("; ")}`] : [];
    });
    expect(wrong).toEqual([]);
  });

  it("never gives the parser's raw words as a reason", () => {
    const raw = rows.flatMap((r) =>
      [r.reader, r.listener].flatMap((v) =>
        v && !v.accepted && RAW_PARSER_TEXT.test(v.reason) ? [`${r.name}: ${v.reason}`] : [],
      ),
    );
    expect(raw).toEqual([]);
  });

  it("explains each refusal of a file DCMTK reads that is not about its content", () => {
    // Refusals for what a file is (colour, 1-bit, not an image, no SOP Class UID) need no note;
    // any other refusal of a file DCMTK reads must say why accepting it would be unsafe.
    const content = /^(UNSUPPORTED_IMAGE|NO_PIXEL_DATA|CORRUPT_PIXEL_DATA)$|^missing /;
    const unexplained = rows.filter(
      (r) =>
        r.dcmdump &&
        [r.reader, r.listener].some(
          (v) => v && !v.accepted && !content.test(v.code) && !content.test(v.reason),
        ) &&
        !EXPECTED[r.name]?.note,
    );
    expect(unexplained.map((r) => r.name)).toEqual([]);
  });

  it("is the table docs/RELIABILITY.md shows", async () => {
    if (missing.length > 0) {
      console.warn("corpus: docs table not compared (part of the corpus is absent)");
      return;
    }
    const path = join(REPO_ROOT, "docs/RELIABILITY.md");
    const doc = await readFile(path, "utf8");
    const begin = doc.indexOf(CORPUS_BEGIN);
    const end = doc.indexOf(CORPUS_END);
    expect(begin, "corpus markers in docs/RELIABILITY.md").toBeGreaterThanOrEqual(0);
    expect(end).toBeGreaterThan(begin);
    const table = `${CORPUS_BEGIN}\n\n${renderCorpusTable(rows)}\n${CORPUS_END}`;
    const current = doc.slice(begin, end + CORPUS_END.length);
    if (process.env.KNEEGRADE_WRITE_DOCS === "1" && current !== table) {
      await writeFile(path, doc.slice(0, begin) + table + doc.slice(end + CORPUS_END.length));
      return;
    }
    expect(current).toBe(table);
  });
});
