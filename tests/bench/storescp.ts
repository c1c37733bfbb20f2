/** DCMTK storescp as the benchmark's baseline: a long-lived process on a free port. */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { echoscu } from "../helpers/dcmtk.ts";

/** The spool's directory for half-received files (services/listener/src/spool.ts). */
export const INCOMING_SPOOL_DIR = ".incoming";

export interface Storescp {
  dir: string;
  port: number;
  pid: number;
  aet: string;
  mkdir(): Promise<void>;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Starts `storescp` writing to `dir` (default options: files kept in the received syntax). */
export async function startStorescp(dir: string, extra: string[]): Promise<Storescp> {
  const aet = "STORESCP";
  const port = await freePort();
  await mkdir(dir, { recursive: true });
  const child: ChildProcess = spawn("storescp", ["-aet", aet, "-od", dir, ...extra, String(port)], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`storescp exited: ${stderr}`);
    if ((await echoscu({ port, calledAet: aet })).code === 0) break;
    if (Date.now() > deadline) {
      child.kill();
      throw new Error(`storescp did not answer C-ECHO: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    dir,
    port,
    pid: child.pid!,
    aet,
    mkdir: async () => {
      await mkdir(dir, { recursive: true });
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
    },
  };
}

/** User + system CPU time of a process, in ms (Linux /proc). */
export function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the full line (11 and 12 after the command).
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / 100;
}

/** Every plain file below `dir`. */
export async function listFilesRecursive(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}
