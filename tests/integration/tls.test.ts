/** DICOM over TLS (LISTENER_TLS_KEY/CERT), with DCMTK's echoscu/storescu as the TLS peer. */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cEcho, cStoreFiles } from "@kneegrade/dicom";
import { afterAll, beforeAll, expect, it } from "vitest";
import { selfSignedCert } from "../helpers/certs.ts";
import { tool } from "../helpers/dcmtk.ts";
import { type Harness, startHarness } from "../helpers/env.ts";
import { buildStudy } from "../helpers/studies.ts";

const dir = mkdtempSync(join(tmpdir(), "kneegrade-tls-"));
const { key, cert } = selfSignedCert(dir);
let h: Harness;

beforeAll(async () => {
  h = await startHarness({ LISTENER_TLS_KEY: key, LISTENER_TLS_CERT: cert });
});
afterAll(() => h.stop());

const tlsArgs = ["+tla", "+cf", cert, "-aec", "KNEEGRADE", "-aet", "MODALITY"];

it("speaks DICOM over TLS only", async () => {
  const port = String(h.listener.port);
  const echo = await tool("echoscu", [...tlsArgs, "127.0.0.1", port]);
  expect(echo.code, echo.stderr).toBe(0);
  const plain = await tool("echoscu", ["-aec", "KNEEGRADE", "127.0.0.1", port], 15_000);
  expect(plain.code).not.toBe(0);

  const study = await buildStudy({ dir: join(dir, "study"), sources: ["RG3_UNC.dcm"] });
  const store = await tool("storescu", [...tlsArgs, "127.0.0.1", port, study.instances[0]!.path]);
  expect(store.code, store.stderr).toBe(0);
  expect(
    await h.db.instance.count({ where: { sopInstanceUid: study.instances[0]!.sopInstanceUid } }),
  ).toBe(1);
});

it("delivers over TLS as the reporter does (PACS_TLS), verifying the peer's certificate", async () => {
  const peer = {
    host: "127.0.0.1",
    port: h.listener.port,
    calledAet: "KNEEGRADE",
    callingAet: "REPORTER",
    timeoutMs: 10_000,
  };
  const echo = await cEcho({ ...peer, tls: { ca: readFileSync(cert, "utf8") } });
  expect(echo).toMatchObject({ status: 0 });
  const study = await buildStudy({ dir: join(dir, "tls-scu"), sources: ["RG3_UNC.dcm"] });
  const [stored] = await cStoreFiles({ ...peer, tls: { ca: readFileSync(cert, "utf8") } }, [
    study.instances[0]!.path,
  ]);
  expect(stored).toMatchObject({ status: 0 });
  // A certificate the system does not trust (self-signed here) is refused, not silently used.
  const untrusted = await cEcho({ ...peer, tls: {} });
  expect(untrusted.status).toBeNull();
  expect(untrusted.error).toMatch(/certificate|self.signed/i);
});
