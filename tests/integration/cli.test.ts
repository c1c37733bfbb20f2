/**
 * The operator commands against real peers: `kneegrade echo` and `kneegrade send` with Orthanc as
 * the PACS and the kneegrade listener; a PACS that is down gives a clear failure.
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configEnv, runCli } from "../helpers/cli.ts";
import { type Harness, startHarness, waitFor } from "../helpers/env.ts";
import { type RunningOrthanc, startOrthanc } from "../helpers/orthanc.ts";
import { buildStudy, type TestStudy } from "../helpers/studies.ts";

let orthanc: RunningOrthanc;
let h: Harness;
let env: Record<string, string>;
let study: TestStudy;

beforeAll(async () => {
  orthanc = await startOrthanc();
  h = await startHarness();
  env = {
    ...configEnv(h.config),
    LISTENER_PORT: String(h.listener.port),
    PACS_HOST: "127.0.0.1",
    PACS_PORT: String(orthanc.dicomPort),
    PACS_AET: orthanc.aet,
  };
  study = await buildStudy({
    dir: join(tmpdir(), `kneegrade-cli-${process.pid}`),
    sources: ["RG3_UNC.dcm", "RG3_J2KR.dcm"],
  });
});
afterAll(async () => {
  await h.stop();
  await orthanc.stop();
});

describe("kneegrade echo", () => {
  it("C-ECHOes the listener and the PACS", async () => {
    const listener = await runCli(["echo"], env);
    expect(listener.code, listener.stderr).toBe(0);
    expect(listener.stdout).toContain(`ok: C-ECHO KNEEGRADE@127.0.0.1:${h.listener.port}`);
    const pacs = await runCli(["echo", "--pacs"], env);
    expect(pacs.code, pacs.stderr).toBe(0);
    expect(pacs.stdout).toContain(`ok: C-ECHO ORTHANC@127.0.0.1:${orthanc.dicomPort}`);
  });

  it("fails clearly when the PACS is down or the AE title is wrong", async () => {
    const wrongAet = await runCli(["echo", "--pacs", "--aet", "NOT_ORTHANC"], env);
    expect(wrongAet.code).toBe(1);
    expect(wrongAet.stdout).toMatch(/failed: C-ECHO NOT_ORTHANC.*association rejected/);
    const down = await runCli(["echo", "--pacs", "--port", "1", "--timeout", "5"], env);
    expect(down.code).toBe(1);
    expect(down.stdout).toMatch(/failed: .*ECONNREFUSED/);
  });
});

describe("kneegrade send", () => {
  it("stores a study in the listener (directories are walked)", async () => {
    const sent = await runCli(["send", join(tmpdir(), `kneegrade-cli-${process.pid}`)], env);
    expect(sent.code, sent.stdout + sent.stderr).toBe(0);
    expect(sent.stdout).toContain("2 of 2 sent");
    const rows = await h.db.instance.findMany({
      where: { study: { studyInstanceUid: study.studyInstanceUid } },
    });
    expect(rows.map((r) => r.transferSyntaxUid).sort()).toEqual([
      "1.2.840.10008.1.2.1",
      "1.2.840.10008.1.2.4.90",
    ]);
  });

  it("stores into the PACS with --pacs", async () => {
    const sent = await runCli(["send", "--pacs", study.instances[0]!.path], env);
    expect(sent.code, sent.stdout + sent.stderr).toBe(0);
    const found = await waitFor(async () => {
      const r = await fetch(`${orthanc.httpUrl}/tools/find`, {
        method: "POST",
        body: JSON.stringify({
          Level: "Instance",
          Query: { SOPInstanceUID: study.instances[0]!.sopInstanceUid },
        }),
      });
      const ids = (await r.json()) as string[];
      return ids.length === 1 ? ids : undefined;
    });
    expect(found).toHaveLength(1);
  });

  it("exits non-zero and names the file when a store fails", async () => {
    const sent = await runCli(["send", "--aet", "WRONG", study.instances[0]!.path], env);
    expect(sent.code).toBe(1);
    expect(sent.stdout).toContain(`failed: ${study.instances[0]!.path}`);
  });
});

describe("kneegrade serve start-up", () => {
  it("refuses an invalid configuration before connecting, naming every variable", async () => {
    const r = await runCli(["serve"], {
      ...env,
      LISTENER_PORT: "eleven",
      STUDY_STABLE_SECONDS: "0",
    });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain("LISTENER_PORT");
    expect(r.stderr).toContain("STUDY_STABLE_SECONDS");
  });

  it("says which dependency is missing: a routing rules file, the database", async () => {
    const rules = await runCli(["serve", "--only", "listener"], {
      ...env,
      ROUTING_RULES_FILE: "/nonexistent/rules.json",
    });
    expect(rules.code).toBe(1);
    expect(rules.stdout).toContain("ROUTING_RULES_FILE /nonexistent/rules.json");
    const db = await runCli(["serve"], {
      ...env,
      DATABASE_URL: "postgresql://postgres@127.0.0.1:1/x",
    });
    expect(db.code).toBe(1);
    expect(db.stdout).toMatch(/PostgreSQL at DATABASE_URL is not reachable: .*127\.0\.0\.1:1/);
    const only = await runCli(["serve", "--only", "listener,printer"], env);
    expect(only.code).toBe(1);
    expect(only.stdout).toContain("unknown service printer");
  });
});
