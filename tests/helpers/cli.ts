/** The real `kneegrade` CLI as a child process, the way an operator (or systemd) runs it. */
import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import type { Config } from "@kneegrade/config";
import { REPO_ROOT } from "./paths.ts";

export const CLI = `${REPO_ROOT}packages/cli/bin/kneegrade.js`;

export function configEnv(config: Config): Record<string, string> {
  return {
    DATABASE_URL: config.DATABASE_URL,
    REDIS_URL: config.REDIS_URL,
    QUEUE_PREFIX: config.QUEUE_PREFIX,
    LISTENER_HOST: config.LISTENER_HOST,
    LISTENER_PORT: String(config.LISTENER_PORT),
    SPOOL_DIR: config.SPOOL_DIR,
    SPOOL_MIN_FREE_MB: String(config.SPOOL_MIN_FREE_MB),
    STUDY_STABLE_SECONDS: String(config.STUDY_STABLE_SECONDS),
    PACS_PORT: String(config.PACS_PORT),
    // Every `kneegrade serve` of a test gets a free ops port on loopback (several run at once).
    METRICS_HOST: "127.0.0.1",
    METRICS_PORT: "0",
    LOG_LEVEL: "info",
  };
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** Starts `kneegrade serve` and resolves once the given log event was printed. */
export async function startServe(
  env: Record<string, string>,
  args: string[],
  readyEvent = "serve.started",
  /** Working directory of the process (default: the repository). */
  cwd = REPO_ROOT,
): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, [CLI, "serve", ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    output += d.toString();
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${output}`)), 30_000);
    const check = () => {
      if (output.includes(`"event":"${readyEvent}"`)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", check);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}:\n${output}`));
    });
  });
  return { child, output: () => output };
}

export async function kill(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL") {
  // Exited, or ended by a signal (a SIGKILLed child has no exit code, only a signal code).
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill(signal);
  await exited;
}

/** Runs one CLI command to completion with the given environment. */
export function runCli(args: string[], env: Record<string, string>) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** The ops port a `kneegrade serve` bound, from its `serve.started` log line. */
export function metricsPortOf(output: string): number {
  const line = output.split("\n").find((l) => l.includes('"event":"serve.started"'));
  const port = line ? (JSON.parse(line) as { metricsPort?: number }).metricsPort : undefined;
  if (!port) throw new Error(`no metricsPort in the serve.started line:\n${output}`);
  return port;
}
