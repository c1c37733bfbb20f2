/**
 * The whole stack of the soak, started here and owned by it, so that its faults (a PostgreSQL or
 * Redis restart, Redis losing its data, the PACS stopped) hit nobody else's tests: a PostgreSQL
 * cluster of its own (initdb), a Redis of its own, Orthanc as the PACS behind a proxy that can
 * delay, a spool on a small tmpfs (as root) that can be filled, and `kneegrade serve` as separate
 * processes, restarted like a supervisor (systemd, Kubernetes) would when they exit.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createWriteStream, existsSync, readdirSync, type WriteStream } from "node:fs";
import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { CLI, freePort, kill } from "../helpers/cli.ts";
import { orthancBinary, orthancConfig } from "../helpers/orthanc.ts";
import { REPO_ROOT } from "../helpers/paths.ts";

const exec = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} did not come up`);
    await sleep(100);
  }
}

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });

// ---------------------------------------------------------------- PostgreSQL

function pgBin(): string {
  const root = "/usr/lib/postgresql";
  const version = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, "bin", "initdb")))
        .sort((a, b) => Number(b) - Number(a))[0]
    : undefined;
  if (!version) throw new Error("PostgreSQL's initdb/pg_ctl not found under /usr/lib/postgresql");
  return join(root, version, "bin");
}

/** PostgreSQL refuses to run as root: as root, its tools run as the `postgres` user. */
function asPostgres(cmd: string, args: string[]) {
  return isRoot ? exec("runuser", ["-u", "postgres", "--", cmd, ...args]) : exec(cmd, args);
}

export interface SoakPostgres {
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  sizes(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

export async function startPostgres(dir: string): Promise<SoakPostgres> {
  const bin = pgBin();
  const data = join(dir, "data");
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o777);
  const port = await freePort();
  await asPostgres(join(bin, "initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "-N"]);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`;
  const ctl = (...args: string[]) =>
    asPostgres(join(bin, "pg_ctl"), ["-D", data, "-l", join(dir, "postgres.log"), ...args]);
  const start = async () => {
    await ctl("-o", options, "-w", "start");
  };
  await start();
  const admin = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: "postgres" });
  await admin.connect();
  await admin.query('CREATE DATABASE "kneegrade"');
  await admin.end();
  const url = `postgresql://postgres@127.0.0.1:${port}/kneegrade`;
  await exec("npx", ["prisma", "migrate", "deploy"], {
    cwd: REPO_ROOT,
    env: { ...process.env, DATABASE_URL: url, CHECKPOINT_DISABLE: "1" },
  });
  const sizesClient = new pg.Pool({ connectionString: url, max: 1 });
  sizesClient.on("error", () => {});
  return {
    url,
    start,
    async stop() {
      await ctl("-m", "fast", "-w", "stop");
    },
    async sizes() {
      const r = await sizesClient.query<{ relname: string; bytes: string }>(
        "SELECT relname, pg_total_relation_size(relid)::text AS bytes FROM pg_catalog.pg_statio_user_tables",
      );
      return Object.fromEntries(r.rows.map((row) => [row.relname, Number(row.bytes)]));
    },
    async close() {
      await sizesClient.end().catch(() => {});
      await ctl("-m", "immediate", "-w", "stop").catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- Redis

export interface SoakRedis {
  url: string;
  /** Stops Redis: with `keep`, it saves its data first and loads it again on start. */
  stop(keep: boolean): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function startRedis(dir: string): Promise<SoakRedis> {
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--dbfilename",
        "dump.rdb",
        "--save",
        "",
        "--appendonly",
        "no",
        "--logfile",
        join(dir, "redis.log"),
      ],
      { stdio: "ignore" },
    );
    await waitUntil("redis-server", () => portOpen(port));
  };
  await start();
  const stop = async (keep: boolean) => {
    const c = child;
    if (!c) return;
    const exited = new Promise((r) => c.once("exit", r));
    await exec("redis-cli", ["-p", String(port), "shutdown", keep ? "save" : "nosave"]).catch(
      () => {},
    );
    await exited;
    if (!keep) await rm(join(dir, "dump.rdb"), { force: true });
    child = undefined;
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
    async close() {
      await stop(false);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- Orthanc behind a delaying proxy

export interface SoakPacs {
  /** The port the reporter sends to: the proxy in front of Orthanc. */
  port: number;
  aet: string;
  httpUrl: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Delay (ms) added to every answer of the PACS; 0 passes bytes straight through. */
  setDelay(ms: number): void;
  close(): Promise<void>;
}

export async function startPacs(dir: string): Promise<SoakPacs> {
  await mkdir(dir, { recursive: true });
  const dicomPort = await freePort();
  const httpPort = await freePort();
  const aet = "ORTHANC";
  const config = join(dir, "orthanc.json");
  await writeFile(
    config,
    JSON.stringify({
      ...orthancConfig({ name: "KneegradeSoakPACS", dir, aet, dicomPort, httpPort }),
      // Keeps every change for the soak's watcher, however long the run.
      KeepAlive: true,
    }),
  );
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(orthancBinary() ?? "Orthanc", [`--logdir=${dir}`, config], { stdio: "ignore" });
    await waitUntil("Orthanc", async () => (await fetch(`${httpUrl}/system`)).ok);
  };
  await start();

  let delayMs = 0;
  const sockets = new Set<net.Socket>();
  /** Forwards chunks in order; the PACS's, each held `delayMs` (a slow PACS, a congested link). */
  const relay = (from: net.Socket, to: net.Socket, slowed: boolean) => {
    let chain = Promise.resolve();
    from.on("data", (chunk: Buffer) => {
      const wait = slowed ? delayMs : 0;
      chain = chain.then(async () => {
        if (wait > 0) await sleep(wait);
        if (!to.destroyed) to.write(chunk);
      });
    });
    from.on("end", () => void chain.then(() => to.end()));
  };
  const proxy = net.createServer((client) => {
    const upstream = net.connect(dicomPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    relay(client, upstream, false);
    relay(upstream, client, true);
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", closeBoth).on("close", closeBoth);
    upstream.on("error", closeBoth).on("close", closeBoth);
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  const port = (proxy.address() as net.AddressInfo).port;
  const stop = async () => {
    if (child) await kill(child, "SIGTERM");
    child = undefined;
  };
  return {
    port,
    aet,
    httpUrl,
    start,
    stop,
    setDelay(ms) {
      delayMs = ms;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => proxy.close(() => r()));
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- the spool's disk

export interface SoakSpool {
  dir: string;
  /** A tmpfs of `sizeMb` (as root) whose free space a fault can take away; else a plain folder. */
  tmpfs: boolean;
  /** Writes a filler file leaving `leaveMb` free; returns its size in bytes. */
  fill(leaveMb: number): Promise<number>;
  free(): Promise<void>;
  bytes(): Promise<number>;
  close(): Promise<void>;
}

export async function startSpool(dir: string, sizeMb: number): Promise<SoakSpool> {
  await mkdir(dir, { recursive: true });
  let tmpfs = false;
  if (isRoot) {
    await exec("mount", ["-t", "tmpfs", "-o", `size=${sizeMb}m,mode=0755`, "tmpfs", dir]);
    tmpfs = true;
  }
  const filler = join(dir, ".soak-filler");
  const spoolDir = join(dir, "spool");
  await mkdir(spoolDir, { recursive: true });
  return {
    dir: spoolDir,
    tmpfs,
    async fill(leaveMb) {
      const { stdout } = await exec("df", ["-B1", "--output=avail", dir]);
      const avail = Number(stdout.trim().split("\n").pop());
      const size = Math.max(0, avail - leaveMb * 1024 * 1024);
      await exec("fallocate", ["-l", String(size), filler]);
      return size;
    },
    async free() {
      await rm(filler, { force: true });
    },
    async bytes() {
      const { stdout } = await exec("du", ["-sb", spoolDir]);
      return Number(stdout.split("\t")[0]);
    },
    async close() {
      if (tmpfs) await exec("umount", ["-l", dir]).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- kneegrade serve, supervised

export interface ServiceExit {
  role: string;
  at: number;
  code: number | null;
  signal: string | null;
  /** Ended by the soak (a fault), not on its own. */
  expected: boolean;
}

export class Service {
  child: ChildProcess | undefined;
  metricsPort: number | undefined;
  /** BullMQ's processedBy of a worker (host:pid). */
  workerName: string | undefined;
  incarnation = 0;
  /** When the current process was started (ms since the epoch). */
  startedAt = 0;
  private expectingExit = false;
  private stopped = false;
  private readonly log: WriteStream;

  constructor(
    readonly role: string,
    private readonly env: Record<string, string>,
    private readonly args: string[],
    logDir: string,
    private readonly onExit: (exit: ServiceExit) => void,
    private readonly cwd = REPO_ROOT,
  ) {
    this.log = createWriteStream(join(logDir, `${role}.log`), { flags: "a" });
  }

  /** Starts the process and resolves once it logged `serve.started`. */
  start(): Promise<void> {
    this.incarnation += 1;
    this.startedAt = Date.now();
    this.metricsPort = undefined;
    const child = spawn(process.execPath, [CLI, "serve", ...this.args], {
      cwd: this.cwd,
      env: { ...process.env, ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    let partial = "";
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.role} did not start`)), 120_000);
      child.stdout!.on("data", (d: Buffer) => {
        this.log.write(d);
        partial += d.toString();
        const lines = partial.split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) {
          if (line.includes('"event":"worker.started"')) {
            this.workerName = /"worker":"([^"]+)"/.exec(line)?.[1];
          }
          if (line.includes('"event":"serve.started"')) {
            this.metricsPort = Number(/"metricsPort":(\d+)/.exec(line)?.[1]);
            clearTimeout(timer);
            resolve();
          }
        }
      });
      child.stderr!.on("data", (d: Buffer) => this.log.write(d));
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${this.role} exited (${code ?? signal}) before it started`));
        const expected = this.expectingExit || this.stopped;
        this.expectingExit = false;
        this.onExit({ role: this.role, at: Date.now(), code, signal, expected });
        // A supervisor restarts what exits on its own; the soak restarts what it ended itself.
        if (!expected && !this.stopped) {
          setTimeout(() => {
            if (!this.stopped && this.child === child) void this.start().catch(() => {});
          }, 2_000);
        }
      });
    });
    return ready;
  }

  /** Ends the process with `signal` (a fault) and starts it again after `downMs`. */
  async bounce(signal: NodeJS.Signals, downMs: number) {
    if (this.child) {
      this.expectingExit = true;
      await kill(this.child, signal);
    }
    await sleep(downMs);
    await this.start();
  }

  async stop() {
    this.stopped = true;
    if (this.child) await kill(this.child, "SIGTERM");
    await new Promise((r) => this.log.end(r));
  }
}
