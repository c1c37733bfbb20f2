/**
 * docker-compose.yml: valid for Compose, and the structure a deployment relies on (docs/DEPLOYMENT.md).
 * Reads the normalized model that `docker-compose config` prints (interpolated, anchors merged),
 * so it checks what Compose would run rather than how the file happens to be written. That YAML is
 * converted to JSON with the PyYAML that docker-compose v1 itself runs on (no npm dependency).
 * Needs docker-compose on PATH; no Docker engine is contacted.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "./helpers/paths.ts";

const APP_SERVICES = ["listener", "worker", "reporter", "review"] as const;
const LONG_RUNNING = ["redis", "postgres", "orthanc", ...APP_SERVICES] as const;
const ALL_SERVICES = [...LONG_RUNNING, "migrate"] as const;
/** A long-running service without a health check must say why in this label. */
const NO_HEALTHCHECK_LABEL = "kneegrade.no-healthcheck";

type PortEntry = string | { target: number; published?: number | string };
type VolumeEntry = string | { type?: string; source?: string; target: string; read_only?: boolean };

interface ComposeService {
  image?: string;
  build?: { context?: string; dockerfile?: string; args?: Record<string, string> };
  command?: string[] | string;
  entrypoint?: string[] | string;
  restart?: string;
  environment?: Record<string, string>;
  ports?: PortEntry[];
  volumes?: VolumeEntry[];
  labels?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test?: string[] | string; disable?: boolean };
  deploy?: {
    resources?: {
      reservations?: {
        devices?: { driver?: string; count?: number | string; capabilities?: string[] }[];
      };
    };
  };
}

interface ComposeModel {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

/** Only what Compose needs; the developer's own PACS_HOST etc. must not leak into the checks. */
const ENV = {
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: process.env.HOME ?? "/tmp",
  POSTGRES_PASSWORD: "compose-test",
};

function compose(
  args: string[],
  env: Record<string, string> = ENV,
  files: string[] = ["docker-compose.yml"],
) {
  return spawnSync("docker-compose", [...files.flatMap((f) => ["-f", f]), ...args], {
    cwd: REPO_ROOT,
    env,
    encoding: "utf8",
  });
}

function mount(entry: VolumeEntry): { source: string; target: string; readOnly: boolean } {
  if (typeof entry !== "string") {
    return { source: entry.source ?? "", target: entry.target, readOnly: entry.read_only === true };
  }
  const [source = "", target = "", mode = ""] = entry.split(":");
  return { source, target, readOnly: mode.split(",").includes("ro") };
}

function publishes(entry: PortEntry, port: number): boolean {
  if (typeof entry !== "string") {
    return entry.target === port && Number(entry.published) === port;
  }
  // "[ip:]published:target[/proto]"
  const parts = entry.replace(/\/(tcp|udp)$/, "").split(":");
  return parts.at(-1) === String(port) && parts.at(-2) === String(port);
}

let model: ComposeModel;
let gpuModel: ComposeModel;
let service: (name: string) => ComposeService;

/** The model `docker-compose config` prints for these files, as JSON. */
function load(files: string[]): ComposeModel {
  const printed = compose(["config"], ENV, files);
  if (printed.status !== 0) throw new Error(`docker-compose config failed:\n${printed.stderr}`);
  const json = execFileSync(
    "python3",
    ["-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
    { input: printed.stdout, encoding: "utf8" },
  );
  return JSON.parse(json) as ComposeModel;
}

beforeAll(() => {
  const which = spawnSync("docker-compose", ["version"], { encoding: "utf8" });
  if (which.error || which.status !== 0) {
    throw new Error("docker-compose is not on PATH: it is needed to validate docker-compose.yml");
  }
  model = load(["docker-compose.yml"]);
  gpuModel = load(["docker-compose.yml", "docker-compose.gpu.yml"]);
  service = (name) => {
    const s = model.services[name];
    if (!s) throw new Error(`docker-compose.yml has no service "${name}"`);
    return s;
  };
});

describe("docker-compose.yml", () => {
  it("is valid (docker-compose config -q)", () => {
    const result = compose(["config", "-q"]);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
  });

  it("refuses to start without POSTGRES_PASSWORD", () => {
    const { POSTGRES_PASSWORD: _unset, ...env } = ENV;
    const result = compose(["config", "-q"], env);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("POSTGRES_PASSWORD");
  });

  it("has exactly the seven services", () => {
    expect(Object.keys(model.services).sort()).toEqual([...ALL_SERVICES].sort());
  });

  it("runs the worker on the CPU anywhere, and on one NVIDIA GPU with docker-compose.gpu.yml", () => {
    expect(service("worker").deploy?.resources?.reservations?.devices ?? []).toEqual([]);
    expect(service("worker").environment?.INFERENCE_PROVIDERS).toBe("cpu");
    const gpu = gpuModel.services.worker!;
    expect(gpu.deploy?.resources?.reservations?.devices).toContainEqual(
      expect.objectContaining({ driver: "nvidia", count: 1, capabilities: ["gpu"] }),
    );
    expect(gpu.build).toMatchObject({ dockerfile: "Dockerfile.gpu" });
    expect(gpu.environment?.INFERENCE_PROVIDERS?.split(",")[0]).toBe("cuda");
    // Only the worker changes.
    for (const name of ["listener", "reporter", "review", "migrate"]) {
      expect(gpuModel.services[name]).toEqual(model.services[name]);
    }
    const gpuCheck = compose(["config", "-q"], ENV, [
      "docker-compose.yml",
      "docker-compose.gpu.yml",
    ]);
    expect(gpuCheck.stderr).toBe("");
  });

  it.each(LONG_RUNNING)("%s has a health check (or documents why not) and restarts", (name) => {
    const s = service(name);
    const test = s.healthcheck?.test;
    const checked =
      s.healthcheck?.disable !== true &&
      test !== undefined &&
      test.length > 0 &&
      !(Array.isArray(test) && test[0] === "NONE");
    if (!checked) expect(s.labels?.[NO_HEALTHCHECK_LABEL] ?? "").not.toBe("");
    expect(s.restart).toBe("unless-stopped");
  });

  it("runs the migration once, after PostgreSQL is healthy", () => {
    const migrate = service("migrate");
    expect([migrate.entrypoint, migrate.command].flat().join(" ")).toContain(
      "prisma migrate deploy",
    );
    expect(migrate.restart).toBe("no");
    expect(migrate.depends_on?.postgres?.condition).toBe("service_healthy");
  });

  it.each(APP_SERVICES)("%s waits for the migration, PostgreSQL and Redis", (name) => {
    const deps = service(name).depends_on ?? {};
    expect(deps.migrate?.condition).toBe("service_completed_successfully");
    expect(deps.postgres?.condition).toBe("service_healthy");
    expect(deps.redis?.condition).toBe("service_healthy");
  });

  it.each(APP_SERVICES)("%s runs `kneegrade serve --only %s`", (name) => {
    const s = service(name);
    expect(s.command).toEqual(["serve", "--only", name]);
    expect(s.image).toBe(service("migrate").image);
  });

  it("publishes the listener's DICOM port 11112", () => {
    const ports = service("listener").ports ?? [];
    expect(ports.some((p) => publishes(p, 11112))).toBe(true);
  });

  it("publishes the review pages on the host's loopback only", () => {
    const review = service("review");
    expect(review.environment).toMatchObject({ REVIEW_HOST: "0.0.0.0", REVIEW_PORT: "8484" });
    const ports = review.ports ?? [];
    expect(ports.length).toBe(1);
    expect(ports.every((p) => publishes(p, 8484))).toBe(true);
    // "127.0.0.1:8484:8484/tcp", or the long form with host_ip.
    expect(
      ports.every((p) =>
        typeof p === "string"
          ? p.startsWith("127.0.0.1:")
          : (p as { host_ip?: string }).host_ip === "127.0.0.1",
      ),
    ).toBe(true);
  });

  it.each(APP_SERVICES)("%s keeps SPOOL_DIR on the named volume `spool`", (name) => {
    const s = service(name);
    expect(Object.keys(model.volumes ?? {})).toContain("spool");
    const spool = (s.volumes ?? []).map(mount).find((m) => m.source === "spool");
    expect(spool?.target).toBeDefined();
    expect(s.environment?.SPOOL_DIR).toBe(spool?.target);
  });

  it("mounts the model read-only at the worker's MODEL_DIR", () => {
    const worker = service("worker");
    const mounted = (worker.volumes ?? [])
      .map(mount)
      .find((m) => m.target === "/opt/kneegrade/models");
    expect(mounted?.readOnly).toBe(true);
    expect(worker.environment?.MODEL_DIR).toBe(mounted?.target);
  });

  it("points the app at the compose services and the development PACS by default", () => {
    for (const name of APP_SERVICES) {
      const env = service(name).environment ?? {};
      expect(env.DATABASE_URL).toMatch(/^postgresql:\/\/[^@]+@postgres:5432\/kneegrade$/);
      expect(env.REDIS_URL).toBe("redis://redis:6379");
      expect(env).toMatchObject({
        LISTENER_AET: "KNEEGRADE",
        PACS_HOST: "orthanc",
        PACS_AET: "ORTHANC",
      });
    }
  });

  it("keeps PostgreSQL, Redis and Orthanc data on named volumes", () => {
    const named = Object.keys(model.volumes ?? {});
    for (const [name, target] of [
      ["postgres", "/var/lib/postgresql/data"],
      ["redis", "/data"],
      ["orthanc", "/var/lib/orthanc/db"],
    ] as const) {
      const m = (service(name).volumes ?? []).map(mount).find((v) => v.target === target);
      expect(named).toContain(m?.source);
    }
  });
});
