/**
 * The containers really run (`npm run test:docker`, a step of .ci/run; not part of `npm test`, which
 * must pass on a machine without a Docker engine). Through infra/docker/compose.sh — local base
 * images when no registry answers — it builds the kneegrade image, brings up the whole
 * docker-compose.yml stack (PostgreSQL, Redis with AOF, Orthanc, the migration, listener, worker,
 * reporter, review) under its own project name and ports, sends a bilateral study from the host
 * with storescu to the listener's published port, waits for the SR in the Orthanc container (read
 * back over its published HTTP port, checked with dsrdump and dciodvfy), and stops the stack:
 * every kneegrade service must exit with status 0. Prints the image size and the build and
 * start-up times.
 */
import { execFile, spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { composeBilateral, radiographDicom } from "@kneegrade/sample-radiographs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dciodvfyErrors, storescu } from "../helpers/dcmtk.ts";
import { waitFor } from "../helpers/env.ts";
import { REPO_ROOT, SHARED_DATA } from "../helpers/paths.ts";
import { newUid } from "../helpers/studies.ts";

const run = promisify(execFile);
const PROJECT = "kneegrade-stack-test";
const PORTS = { listener: 21112, review: 28484, orthancDicom: 24242, orthancHttp: 28042 };
const ORTHANC = `http://127.0.0.1:${PORTS.orthancHttp}`;
const IMAGE = "kneegrade:stack-test";
const KNEEGRADE_SERVICES = ["listener", "worker", "reporter", "review"] as const;

const ENV: Record<string, string> = {
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: process.env.HOME ?? "/tmp",
  KNEEGRADE_IMAGE: IMAGE,
  POSTGRES_PASSWORD: "stack-test-password",
  ALLOWED_CALLING_AETS: "STORESCU,ORTHANC,KNEEGRADE_HC",
  STUDY_STABLE_SECONDS: "2",
  KNEEGRADE_MODEL_DIR: `${REPO_ROOT}models/dist`,
  LISTENER_PUBLISH_PORT: String(PORTS.listener),
  REVIEW_PUBLISH_PORT: String(PORTS.review),
  ORTHANC_DICOM_PUBLISH_PORT: String(PORTS.orthancDicom),
  ORTHANC_HTTP_PUBLISH_PORT: String(PORTS.orthancHttp),
  ...(process.env.KNEEGRADE_BASE ? { KNEEGRADE_BASE: process.env.KNEEGRADE_BASE } : {}),
};

function compose(args: string[], timeoutMs = 60_000) {
  const r = spawnSync("bash", ["infra/docker/compose.sh", "-p", PROJECT, ...args], {
    cwd: REPO_ROOT,
    env: ENV,
    encoding: "utf8",
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) {
    throw new Error(`compose ${args.join(" ")} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

const containerId = (service: string) => compose(["ps", "-q", service]).trim();
const inspect = (id: string, format: string) =>
  spawnSync("docker", ["inspect", "--format", format, id], { encoding: "utf8" }).stdout.trim();

describe("docker compose: the stack builds, runs a study end to end and stops cleanly", () => {
  let work: string;
  const figures: Record<string, string> = {};

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "kneegrade-stack-"));
    compose(["down", "-v", "--remove-orphans"], 300_000);
    const t0 = Date.now();
    compose(["build"], 1_800_000);
    figures.build = `${((Date.now() - t0) / 1000).toFixed(0)} s`;
    const bytes = Number(inspect(IMAGE, "{{.Size}}"));
    figures.image = `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
  }, 1_900_000);

  afterAll(async () => {
    console.log(`stack figures: ${JSON.stringify(figures)}`);
    try {
      compose(["down", "-v", "--remove-orphans"], 300_000);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }, 320_000);

  it("the image runs as a non-root user, starts with node and has a health check", () => {
    expect(inspect(IMAGE, "{{.Config.User}}")).toBe("kneegrade");
    expect(inspect(IMAGE, "{{json .Config.Entrypoint}}")).toBe(
      '["node","/app/packages/cli/bin/kneegrade.js"]',
    );
    expect(inspect(IMAGE, "{{json .Config.Healthcheck.Test}}")).toContain("/healthz");
    // Production dependencies only, compiled JavaScript: no tsx, no TypeScript sources of ours.
    const listing = spawnSync(
      "docker",
      [
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        IMAGE,
        "-c",
        "ls node_modules/tsx node_modules/vitest packages/cli/src/main.ts 2>&1; ls packages/cli/src/main.js",
      ],
      { encoding: "utf8" },
    ).stdout;
    expect(listing).toMatch(/node_modules\/tsx.*No such file/);
    expect(listing).toMatch(/node_modules\/vitest.*No such file/);
    expect(listing).toMatch(/main\.ts.*No such file/);
    expect(listing).toMatch(/^packages\/cli\/src\/main\.js$/m);
  });

  it("comes up healthy: migration applied once, every long-running service healthy", async () => {
    const t0 = Date.now();
    compose(["up", "-d"], 600_000);
    const services = ["postgres", "redis", "orthanc", ...KNEEGRADE_SERVICES];
    await waitFor(
      async () => {
        const states = services.map((s) => inspect(containerId(s), "{{.State.Health.Status}}"));
        return states.every((s) => s === "healthy") ? true : undefined;
      },
      600_000,
      "every service healthy",
      2_000,
    );
    figures.startup = `${((Date.now() - t0) / 1000).toFixed(0)} s (up -d to all healthy)`;
    const migrate = containerId("migrate");
    expect(inspect(migrate, "{{.State.ExitCode}}")).toBe("0");
    // Redis keeps BullMQ's jobs across restarts.
    const aof = spawnSync(
      "docker",
      ["exec", containerId("redis"), "redis-cli", "CONFIG", "GET", "appendonly"],
      {
        encoding: "utf8",
      },
    ).stdout;
    expect(aof).toMatch(/appendonly\s+yes/);
  }, 620_000);

  it("storescu on the host → listener container → worker → reporter → an SR in the Orthanc container", async () => {
    const val = `${SHARED_DATA}knee-kl/val/`;
    const r = await composeBilateral([`${val}1/9003380R.png`, `${val}3/9107980R.png`]);
    const studyInstanceUid = newUid();
    const file = join(work, "bilateral.dcm");
    await writeFile(file, radiographDicom(r, { studyInstanceUid }));
    const sent = await storescu({ port: PORTS.listener, callingAet: "STORESCU" }, [file]);
    expect(sent.code, sent.stderr).toBe(0);

    const t0 = Date.now();
    const sr = await waitFor(
      async () => {
        const response = await fetch(`${ORTHANC}/tools/find`, {
          method: "POST",
          body: JSON.stringify({
            Level: "Instance",
            Query: { StudyInstanceUID: studyInstanceUid, Modality: "SR" },
          }),
        }).catch(() => undefined);
        const ids = response?.ok ? ((await response.json()) as string[]) : [];
        return ids[0];
      },
      300_000,
      "the SR in the Orthanc container",
      1_000,
    );
    figures.study = `${((Date.now() - t0) / 1000).toFixed(1)} s from storescu to the SR in Orthanc`;
    const srFile = join(work, "sr.dcm");
    await writeFile(
      srFile,
      new Uint8Array(await (await fetch(`${ORTHANC}/instances/${sr}/file`)).arrayBuffer()),
    );
    const dump = (await run("dsrdump", ["-Ee", srFile])).stdout;
    expect(dump).toMatch(/Verification Flag\s*: UNVERIFIED/);
    // One measurement group per knee, each with its laterality and a KL grade.
    const groups = dump.split('CONTAINER:(,,"Measurement Group")').slice(1);
    const knees = groups.map((g) => [
      /Laterality"\)=\(\d+,SCT,"(Right|Left)"\)/.exec(g)?.[1],
      /<contains CODE:\(,,"Finding"\)=\((?:AI)?KL(\d)/.exec(g)?.[1],
    ]);
    expect(knees.map(([side]) => side).sort()).toEqual(["Left", "Right"]);
    for (const [, grade] of knees) expect(grade).toMatch(/^[0-4]$/);
    expect(await dciodvfyErrors(srFile)).toEqual([]);
  }, 320_000);

  it("stops cleanly: every kneegrade service exits with status 0", () => {
    const ids = Object.fromEntries(KNEEGRADE_SERVICES.map((s) => [s, containerId(s)]));
    compose(["stop"], 180_000);
    const codes = Object.fromEntries(
      Object.entries(ids).map(([s, id]) => [s, inspect(id, "{{.State.ExitCode}}")]),
    );
    expect(codes).toEqual(Object.fromEntries(KNEEGRADE_SERVICES.map((s) => [s, "0"])));
  }, 200_000);
});
