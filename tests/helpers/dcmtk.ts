/** DCMTK as the modality: echoscu, storescu, dcmodify and dcmdump, run as real processes. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const exec = promisify(execFile);

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function tool(cmd: string, args: string[], timeoutMs = 60_000): Promise<ToolResult> {
  try {
    const { stdout, stderr } = await exec(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof e.code === "number" ? e.code : -1,
      stdout: e.stdout ?? "",
      stderr: e.stderr ?? "",
    };
  }
}

/**
 * dciodvfy's "Error" lines for a DICOM file (none: valid for its IOD). Throws when dciodvfy could
 * not run at all, so a missing validator never reads as a valid object.
 */
export async function dciodvfyErrors(file: string): Promise<string[]> {
  const r = await tool("dciodvfy", [file]);
  if (r.code === -1 && !r.stdout && !r.stderr) throw new Error(`dciodvfy did not run on ${file}`);
  return `${r.stdout}\n${r.stderr}`.split("\n").filter((l) => l.startsWith("Error"));
}

export interface ScuTarget {
  port: number;
  calledAet?: string;
  callingAet?: string;
}

/** AE titles, host and port, as every DCMTK SCU takes them. */
function peerArgs(t: ScuTarget): string[] {
  return [
    "-aec",
    t.calledAet ?? "KNEEGRADE",
    "-aet",
    t.callingAet ?? "MODALITY",
    "127.0.0.1",
    String(t.port),
  ];
}

export function echoscu(t: ScuTarget, extra: string[] = []): Promise<ToolResult> {
  return tool("echoscu", [...extra, ...peerArgs(t)]);
}

export function storescu(t: ScuTarget, files: string[], extra: string[] = []): Promise<ToolResult> {
  return tool("storescu", [...extra, ...peerArgs(t), ...files]);
}

/** Reads one attribute with dcmdump (e.g. "0020,000d"); undefined when absent. */
export async function dumpValue(file: string, tag: string): Promise<string | undefined> {
  const r = await tool("dcmdump", ["-Un", "+P", tag, file]);
  const m = /\[(.*)\]/.exec(r.stdout) ?? /=(\S+)/.exec(r.stdout);
  return m?.[1];
}

/**
 * The reference decompressor for each compressed transfer syntax: DCMTK's, or GDCM's for JPEG 2000
 * (command and options; the input and output files follow). Tests compare our decoding with it;
 * the decode benchmark times it.
 */
export const REFERENCE_DECODERS: Readonly<Record<string, readonly [string, readonly string[]]>> = {
  "1.2.840.10008.1.2.4.50": ["dcmdjpeg", []],
  "1.2.840.10008.1.2.4.51": ["dcmdjpeg", []],
  "1.2.840.10008.1.2.4.57": ["dcmdjpeg", []],
  "1.2.840.10008.1.2.4.70": ["dcmdjpeg", []],
  "1.2.840.10008.1.2.4.80": ["dcmdjpls", []],
  "1.2.840.10008.1.2.4.81": ["dcmdjpls", []],
  "1.2.840.10008.1.2.4.90": ["gdcmconv", ["--raw"]],
  "1.2.840.10008.1.2.4.91": ["gdcmconv", ["--raw"]],
  "1.2.840.10008.1.2.5": ["dcmdrle", []],
};
