/**
 * What kneegrade sends arrives exactly as it was written. The SCU behind `kneegrade send` and the
 * reporter (cStoreFiles) must put each file's data set on the wire byte for byte: dcmjs-dimse's
 * own encoder would turn the UTF-8 "Kellgren–Lawrence" in an SR's content items into
 * C3 A2 C2 80 C2 93 and relabel or garble text in other character sets. Real peers, no mocks:
 * DCMTK storescp in bit-preserving mode (it writes the data set
 * as it came off the wire) and Orthanc; the test compares the data set after the File Meta group,
 * which each receiver rebuilds, and reads the patient's name back decoded by each peer.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { cStoreFiles, type DicomPeer, TRANSFER_SYNTAXES } from "@kneegrade/dicom";
import { writeComprehensiveSr, writeSecondaryCapture } from "@kneegrade/dicom-writers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, fixtureWithImages } from "../../packages/dicom-writers/src/test-support.ts";
import { freePort, kill, runCli } from "../helpers/cli.ts";
import { tool } from "../helpers/dcmtk.ts";
import { TEST_DATABASE_URL, TEST_REDIS_URL } from "../helpers/env.ts";
import { type RunningOrthanc, startOrthanc } from "../helpers/orthanc.ts";
import { WG04_DIR } from "../helpers/paths.ts";

const execFileAsync = promisify(execFile);
const EXPLICIT_LE = TRANSFER_SYNTAXES.explicitVrLittleEndian;
const SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7";

// --- Part 10 framing, written and read here independently of the product's code -----------------

/**
 * The transfer syntax, SOP Instance UID and data set (everything after the File Meta group) of a
 * Part 10 file.
 */
function splitPart10(file: Buffer): {
  transferSyntaxUid: string;
  sopInstanceUid: string;
  dataSet: Buffer;
} {
  if (file.toString("latin1", 128, 132) !== "DICM") throw new Error("not a DICOM Part 10 file");
  let offset = 132;
  let transferSyntaxUid = "";
  let sopInstanceUid = "";
  while (offset + 8 <= file.length && file.readUInt16LE(offset) === 0x0002) {
    const element = file.readUInt16LE(offset + 2);
    const vr = file.toString("latin1", offset + 4, offset + 6);
    const long = ["OB", "OW", "OF", "SQ", "UT", "UN"].includes(vr);
    const length = long ? file.readUInt32LE(offset + 8) : file.readUInt16LE(offset + 6);
    const start = offset + (long ? 12 : 8);
    const value = () => file.toString("latin1", start, start + length).replace(/[\0 ]+$/, "");
    if (element === 0x0003) sopInstanceUid = value();
    if (element === 0x0010) transferSyntaxUid = value();
    offset = start + length;
  }
  return { transferSyntaxUid, sopInstanceUid, dataSet: file.subarray(offset) };
}

/** Where two data sets first differ, with the bytes around it (for failure messages). */
function difference(sent: Buffer, got: Buffer): string | undefined {
  if (sent.equals(got)) return undefined;
  let i = 0;
  while (i < sent.length && i < got.length && sent[i] === got[i]) i += 1;
  const around = (b: Buffer) => b.subarray(Math.max(0, i - 16), i + 16).toString("hex");
  return `lengths ${sent.length}/${got.length}, first difference at ${i}: sent ${around(sent)} got ${around(got)}`;
}

const LONG_VRS = new Set(["OB", "OW", "SQ", "UT", "UN"]);

/** One explicit VR little endian element; `value` is already padded to even length. */
function element(tag: number, vr: string, value: Buffer): Buffer {
  const long = LONG_VRS.has(vr);
  const header = Buffer.alloc(long ? 12 : 8);
  header.writeUInt16LE(tag >>> 16, 0);
  header.writeUInt16LE(tag & 0xffff, 2);
  header.write(vr, 4, "latin1");
  if (long) header.writeUInt32LE(value.length, 8);
  else header.writeUInt16LE(value.length, 6);
  return Buffer.concat([header, value]);
}

const text = (tag: number, vr: string, bytes: Buffer) =>
  element(tag, vr, bytes.length % 2 ? Buffer.concat([bytes, Buffer.from(" ")]) : bytes);
const ascii = (tag: number, vr: string, value: string) =>
  text(tag, vr, Buffer.from(value, "latin1"));
const uid = (tag: number, value: string) =>
  element(tag, "UI", Buffer.from(value.length % 2 ? `${value}\0` : value, "latin1"));
const us = (tag: number, value: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(value);
  return element(tag, "US", b);
};

/** A sequence of one item, both of undefined length (delimited), as many writers emit them. */
function delimitedSequence(tag: number, item: Buffer): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16LE(tag >>> 16, 0);
  header.writeUInt16LE(tag & 0xffff, 2);
  header.write("SQ", 4, "latin1");
  header.writeUInt32LE(0xffffffff, 8);
  const mark = (group: number, elem: number, length: number) => {
    const b = Buffer.alloc(8);
    b.writeUInt16LE(group, 0);
    b.writeUInt16LE(elem, 2);
    b.writeUInt32LE(length, 4);
    return b;
  };
  return Buffer.concat([
    header,
    mark(0xfffe, 0xe000, 0xffffffff),
    item,
    mark(0xfffe, 0xe00d, 0),
    mark(0xfffe, 0xe0dd, 0),
  ]);
}

interface CharsetObject {
  /** (0008,0005) as written. */
  charset: string;
  patientName: Buffer;
  studyDescription: Buffer;
  codeMeaning: Buffer;
}

/**
 * A small Secondary Capture image whose text is in the given character set (bytes as given, so
 * nothing here re-encodes them), with a delimited sequence and a 2×2 pixel matrix.
 */
function charsetPart10(o: CharsetObject, sopInstanceUid: string): Buffer {
  const dataSet = Buffer.concat([
    ascii(0x00080005, "CS", o.charset),
    uid(0x00080016, SECONDARY_CAPTURE),
    uid(0x00080018, sopInstanceUid),
    ascii(0x00080020, "DA", "20261207"),
    ascii(0x00080060, "CS", "OT"),
    ascii(0x00080064, "CS", "WSD"),
    text(0x00081030, "LO", o.studyDescription),
    delimitedSequence(
      0x00081032,
      Buffer.concat([
        ascii(0x00080100, "SH", "KNEE2"),
        ascii(0x00080102, "SH", "99KG"),
        text(0x00080104, "LO", o.codeMeaning),
      ]),
    ),
    text(0x00100010, "PN", o.patientName),
    ascii(0x00100020, "LO", "PAT-29"),
    uid(0x0020000d, `${sopInstanceUid}.1`),
    uid(0x0020000e, `${sopInstanceUid}.2`),
    ascii(0x00200013, "IS", "1"),
    us(0x00280002, 1),
    ascii(0x00280004, "CS", "MONOCHROME2"),
    us(0x00280010, 2),
    us(0x00280011, 2),
    us(0x00280100, 8),
    us(0x00280101, 8),
    us(0x00280102, 7),
    us(0x00280103, 0),
    element(0x7fe00010, "OB", Buffer.from([0, 85, 170, 255])),
  ]);
  const meta = Buffer.concat([
    element(0x00020001, "OB", Buffer.from([0, 1])),
    uid(0x00020002, SECONDARY_CAPTURE),
    uid(0x00020003, sopInstanceUid),
    uid(0x00020010, EXPLICIT_LE),
    uid(0x00020012, "1.2.826.0.1.3680043.10.29"),
  ]);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(meta.length);
  return Buffer.concat([
    Buffer.alloc(128),
    Buffer.from("DICM", "latin1"),
    element(0x00020000, "UL", groupLength),
    meta,
    dataSet,
  ]);
}

// --- the objects sent -------------------------------------------------------------------------

interface Sample {
  name: string;
  file: string;
  sopInstanceUid: string;
  /** PatientName as every peer should decode it. */
  patientName: string;
  /** DCMTK here cannot convert ISO 2022 IR 87 (+U8 fails): read those bytes with Node's decoder. */
  decoder?: string;
}

const WHO = "Müller^Jürgen";
/** GB18030 and ISO 2022 IR 87 bytes (encoded with iconv; the test checks they decode). */
const GB_NAME = Buffer.from("Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=", "latin1");
const GB_TEXT = Buffer.from("cfa5b9d8bdda20d5fdcebbc6ac", "hex"); // 膝关节 正位片
const JIS_NAME = Buffer.from(
  "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
  "latin1",
);
const JIS_TEXT = Buffer.from("1b24424928345840611b2842201b244240354c4c1b2842", "hex"); // 膝関節 正面

let work: string;
const samples: Sample[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "kneegrade-send-bytes-"));
  expect(new TextDecoder("gb18030").decode(GB_TEXT)).toBe("膝关节 正位片");
  expect(new TextDecoder("iso-2022-jp").decode(JIS_TEXT)).toBe("膝関節 正面");

  const add = async (s: Omit<Sample, "file" | "sopInstanceUid">, bytes: Uint8Array) => {
    const file = join(work, `${s.name}.dcm`);
    await writeFile(file, bytes);
    samples.push({ ...s, file, sopInstanceUid: splitPart10(Buffer.from(bytes)).sopInstanceUid });
  };
  // What kneegrade itself spools: the UTF-8 (ISO_IR 192) SR and Secondary Capture.
  const context = { ...fixture().context, patientName: WHO };
  const sr = writeComprehensiveSr(
    fixture({ context, sopInstanceUid: "2.25.29000000000000000000000000000000001" }),
  );
  expect(Buffer.from(sr).includes(Buffer.from("Kellgren–Lawrence"))).toBe(true);
  await add({ name: "sr-utf8", patientName: WHO }, sr);
  const sc = await writeSecondaryCapture(
    await fixtureWithImages({
      context,
      sopInstanceUid: "2.25.29000000000000000000000000000000002",
    }),
  );
  await add({ name: "sc-utf8", patientName: WHO }, sc);
  await add(
    { name: "latin1", patientName: WHO },
    charsetPart10(
      {
        charset: "ISO_IR 100",
        patientName: Buffer.from(WHO, "latin1"),
        studyDescription: Buffer.from("Röntgen Knie beidseits", "latin1"),
        codeMeaning: Buffer.from("Kniegelenk, Übersicht", "latin1"),
      },
      "2.25.29000000000000000000000000000000003",
    ),
  );
  await add(
    {
      name: "gb18030",
      patientName: "Wang^XiaoDong=王^小东=",
    },
    charsetPart10(
      { charset: "GB18030", patientName: GB_NAME, studyDescription: GB_TEXT, codeMeaning: GB_TEXT },
      "2.25.29000000000000000000000000000000004",
    ),
  );
  await add(
    {
      name: "iso2022-ir87",
      patientName: "Yamada^Tarou=山田^太郎=やまだ^たろう",
      decoder: "iso-2022-jp",
    },
    charsetPart10(
      {
        charset: "\\ISO 2022 IR 87",
        patientName: JIS_NAME,
        studyDescription: JIS_TEXT,
        codeMeaning: JIS_TEXT,
      },
      "2.25.29000000000000000000000000000000005",
    ),
  );
  // An Implicit VR Little Endian file, which DCMTK's storescp does not prefer: it must still
  // travel in its own syntax, unconverted. DCMTK converts the syntax, not the Latin-1 text.
  const explicit = join(work, "latin1-explicit.dcm");
  await writeFile(
    explicit,
    charsetPart10(
      {
        charset: "ISO_IR 100",
        patientName: Buffer.from(WHO, "latin1"),
        studyDescription: Buffer.from("Röntgen Knie beidseits, implizit", "latin1"),
        codeMeaning: Buffer.from("Kniegelenk, Übersicht", "latin1"),
      },
      "2.25.29000000000000000000000000000000006",
    ),
  );
  const implicit = await tool("dcmconv", ["+ti", explicit, `${explicit}.implicit`]);
  expect(implicit.code, implicit.stderr).toBe(0);
  const bytes = await readFile(`${explicit}.implicit`);
  expect(splitPart10(bytes).transferSyntaxUid).toBe(TRANSFER_SYNTAXES.implicitVrLittleEndian);
  await add({ name: "latin1-implicit", patientName: WHO }, bytes);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

// --- DCMTK storescp as the receiving PACS -------------------------------------------------------

interface Storescp {
  port: number;
  dir: string;
  output: () => string;
  stop(): Promise<void>;
}

async function waitForPort(port: number, child: ChildProcess, output: () => string) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline || child.exitCode !== null) {
      throw new Error(`storescp did not start:\n${output()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** storescp writing what it receives exactly as read (+B); `extra` picks its transfer syntaxes. */
async function startStorescp(extra: string[] = []): Promise<Storescp> {
  const dir = await mkdtemp(join(tmpdir(), "kneegrade-storescp-"));
  const port = await freePort();
  const child = spawn(
    "storescp",
    ["-aet", "STORESCP", "-od", dir, "+B", "-dhl", ...extra, String(port)],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  await waitForPort(port, child, () => out);
  return {
    port,
    dir,
    output: () => out,
    async stop() {
      await kill(child, "SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The file storescp wrote for an instance (it names files <modality>.<SOP instance UID>). */
async function received(dir: string, sopInstanceUid: string): Promise<string | undefined> {
  const name = (await readdir(dir)).find((f) => f.endsWith(`.${sopInstanceUid}`));
  return name && join(dir, name);
}

const peer = (port: number, calledAet: string): DicomPeer => ({
  host: "127.0.0.1",
  port,
  calledAet,
  callingAet: "KNEEGRADE",
  timeoutMs: 20_000,
});

/** PatientName as DCMTK decodes it (to UTF-8), or the raw bytes through Node's decoder. */
async function dcmtkPatientName(file: string, decoder?: string): Promise<string | undefined> {
  if (decoder) {
    const { stdout } = await execFileAsync("dcmdump", ["-q", "+P", "0010,0010", file], {
      encoding: "latin1",
    });
    const raw = /\[(.*)\]/s.exec(stdout)?.[1];
    return raw === undefined
      ? undefined
      : new TextDecoder(decoder).decode(Buffer.from(raw, "latin1"));
  }
  const r = await tool("dcmdump", ["-q", "+U8", "+P", "0010,0010", file]);
  return /\[(.*)\]/.exec(r.stdout)?.[1];
}

describe("C-STORE of spooled objects into DCMTK storescp", () => {
  let scp: Storescp;
  beforeAll(async () => {
    scp = await startStorescp();
  });
  afterAll(async () => {
    await scp?.stop();
  });

  it("delivers every data set byte for byte, in one association, and the names decode", async () => {
    const outcomes = await cStoreFiles(
      peer(scp.port, "STORESCP"),
      samples.map((s) => s.file),
    );
    expect(outcomes.map((o) => [o.item, o.status])).toEqual(samples.map((s) => [s.file, 0]));
    for (const s of samples) {
      const sent = splitPart10(await readFile(s.file));
      const path = await received(scp.dir, s.sopInstanceUid);
      expect(path, `${s.name} arrived`).toBeDefined();
      const got = splitPart10(await readFile(path!));
      expect(got.transferSyntaxUid, s.name).toBe(sent.transferSyntaxUid);
      expect(difference(sent.dataSet, got.dataSet), `${s.name}: data set bytes`).toBeUndefined();
      expect(await dcmtkPatientName(path!, s.decoder), s.name).toBe(s.patientName);
    }
  });

  it("`kneegrade send` of a spooled SR delivers it intact", async () => {
    const sr = samples.find((s) => s.name === "sr-utf8")!;
    const other = await startStorescp();
    try {
      const sent = await runCli(
        ["send", "--host", "127.0.0.1", "--port", String(other.port), "--aet", "STORESCP", sr.file],
        { DATABASE_URL: TEST_DATABASE_URL, REDIS_URL: TEST_REDIS_URL, LOG_LEVEL: "silent" },
      );
      expect(sent.code, sent.stdout + sent.stderr).toBe(0);
      expect(sent.stdout).toContain("1 of 1 sent");
      const path = await received(other.dir, sr.sopInstanceUid);
      const written = splitPart10(await readFile(sr.file)).dataSet;
      expect(difference(written, splitPart10(await readFile(path!)).dataSet)).toBeUndefined();
      expect(await dcmtkPatientName(path!)).toBe(WHO);
    } finally {
      await other.stop();
    }
  });

  it("sends a compressed file in its own transfer syntax, as it is", async () => {
    const file = `${WG04_DIR}RG3_JPLL.dcm`;
    const other = await startStorescp(["+xa"]);
    try {
      const [outcome] = await cStoreFiles(peer(other.port, "STORESCP"), [file]);
      expect(outcome?.status).toBe(0);
      const name = (await readdir(other.dir))[0];
      const sent = splitPart10(await readFile(file));
      const got = splitPart10(await readFile(join(other.dir, name!)));
      expect(got.transferSyntaxUid).toBe(sent.transferSyntaxUid);
      expect(difference(sent.dataSet, got.dataSet)).toBeUndefined();
    } finally {
      await other.stop();
    }
  });

  it("refuses, with the reason, a file in a syntax the peer did not accept, or not DICOM", async () => {
    // This storescp accepts Implicit VR Little Endian only; the SR is Explicit VR Little Endian.
    const implicitOnly = await startStorescp(["+xi"]);
    try {
      const sr = samples.find((s) => s.name === "sr-utf8")!;
      const implicit = samples.find((s) => s.name === "latin1-implicit")!;
      const junk = join(work, "not-dicom.txt");
      await writeFile(junk, "not a DICOM file");
      const [refused, notDicom, sent] = await cStoreFiles(peer(implicitOnly.port, "STORESCP"), [
        sr.file,
        junk,
        implicit.file,
      ]);
      expect(refused?.status).toBeNull();
      expect(refused?.error).toMatch(
        /^not sent: .*only as ImplicitVRLittleEndian \(1\.2\.840\.10008\.1\.2\), the file is ExplicitVRLittleEndian \(1\.2\.840\.10008\.1\.2\.1\)/,
      );
      expect(notDicom).toMatchObject({
        status: null,
        error: expect.stringMatching(/^not sent: not a DICOM Part 10 file/),
      });
      // The files beside them still go, as they are.
      expect(sent?.status).toBe(0);
      const names = await readdir(implicitOnly.dir);
      expect(names).toHaveLength(1);
      expect(
        difference(
          splitPart10(await readFile(implicit.file)).dataSet,
          splitPart10(await readFile(join(implicitOnly.dir, names[0]!))).dataSet,
        ),
      ).toBeUndefined();
    } finally {
      await implicitOnly.stop();
    }
  });
});

// --- Orthanc as the receiving PACS ------------------------------------------------------------

/**
 * A file's data set as DCMTK writes it: explicit sequence and item lengths, no group lengths.
 * Orthanc stores what it receives through DCMTK that way (a delimited sequence comes back with
 * explicit lengths), so its copy is compared with the sent file after both go through the same
 * writer. Value bytes pass through untouched: a re-encoded string still differs.
 */
async function dcmtkWritten(file: string): Promise<Buffer> {
  const out = `${file}.dcmtk`;
  const r = await tool("dcmconv", ["+e", "-g", "-F", file, out]);
  if (r.code !== 0) throw new Error(`dcmconv ${file}: ${r.stderr}`);
  return readFile(out);
}

describe("C-STORE of spooled objects into Orthanc", () => {
  let orthanc: RunningOrthanc;
  beforeAll(async () => {
    orthanc = await startOrthanc("ORTHANC29");
  });
  afterAll(async () => {
    await orthanc?.stop();
  });

  it("delivers every data set byte for byte and Orthanc decodes the names", async () => {
    const outcomes = await cStoreFiles(
      peer(orthanc.dicomPort, orthanc.aet),
      samples.map((s) => s.file),
    );
    expect(outcomes.map((o) => [o.item, o.status])).toEqual(samples.map((s) => [s.file, 0]));
    for (const s of samples) {
      const found = (await (
        await fetch(`${orthanc.httpUrl}/tools/lookup`, { method: "POST", body: s.sopInstanceUid })
      ).json()) as { ID: string; Type: string }[];
      const id = found.find((f) => f.Type === "Instance")?.ID;
      expect(id, `${s.name} stored`).toBeDefined();
      const stored = join(work, `orthanc-${s.name}.dcm`);
      await writeFile(
        stored,
        Buffer.from(await (await fetch(`${orthanc.httpUrl}/instances/${id}/file`)).arrayBuffer()),
      );
      expect(splitPart10(await readFile(stored)).transferSyntaxUid, s.name).toBe(
        splitPart10(await readFile(s.file)).transferSyntaxUid,
      );
      expect(
        difference(await dcmtkWritten(s.file), await dcmtkWritten(stored)),
        `${s.name}: data set bytes`,
      ).toBeUndefined();
      const tags = (await (
        await fetch(`${orthanc.httpUrl}/instances/${id}/simplified-tags`)
      ).json()) as Record<string, string>;
      expect(tags.PatientName, s.name).toBe(s.patientName);
    }
  });
});
