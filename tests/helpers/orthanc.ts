/** A real Orthanc (Debian's package) as the PACS, on loopback ports of its own. */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, kill } from "./cli.ts";

export interface RunningOrthanc {
  dicomPort: number;
  httpUrl: string;
  aet: string;
  stop(): Promise<void>;
}

/**
 * Orthanc's DICOMweb plugin as Debian installs it (`orthanc-dicomweb`), or null when it is not
 * installed.
 */
export function dicomWebPlugin(): string | null {
  try {
    const listed = execFileSync("dpkg", ["-L", "orthanc-dicomweb"], { encoding: "utf8" })
      .split("\n")
      .find((p) => /\/libOrthancDicomWeb\.so$/.test(p));
    if (listed && existsSync(listed)) return listed;
  } catch {
    // not a dpkg system, or the package is not installed: the usual place, else none
  }
  const usual = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";
  return existsSync(usual) ? usual : null;
}

/** Orthanc's executable, or null when it is not installed. */
export function orthancBinary(): string | null {
  // Debian installs it in /usr/sbin, which is not on every user's PATH.
  if (existsSync("/usr/sbin/Orthanc")) return "/usr/sbin/Orthanc";
  try {
    execFileSync("Orthanc", ["--version"], { stdio: "ignore" });
    return "Orthanc";
  } catch {
    return null;
  }
}

/**
 * Orthanc's configuration as a test PACS: its database under `dir`/db, both ports on loopback, no
 * authentication, and it stores and answers C-ECHO for any calling AE that calls `aet`.
 */
export function orthancConfig(o: {
  name: string;
  dir: string;
  aet: string;
  dicomPort: number;
  httpPort: number;
}) {
  return {
    Name: o.name,
    StorageDirectory: join(o.dir, "db"),
    IndexDirectory: join(o.dir, "db"),
    DicomAet: o.aet,
    DicomPort: o.dicomPort,
    HttpPort: o.httpPort,
    HttpBindAddress: "127.0.0.1",
    DicomBindAddress: "127.0.0.1",
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    DicomCheckCalledAet: true,
    DicomAlwaysAllowStore: true,
    DicomAlwaysAllowEcho: true,
    Plugins: [] as string[],
  };
}

/**
 * `dicomWeb`: also serve DICOMweb (QIDO-RS, WADO-RS, STOW-RS under /dicom-web/, WADO-URI under
 * /wado) through the DICOMweb plugin, as viewers read from a PACS. `dicomPort`: that DICOM port
 * (a PACS started again where the one stopped before was), else a free one.
 */
export async function startOrthanc(
  aet = "ORTHANC",
  options: { dicomWeb?: boolean; dicomPort?: number } = {},
): Promise<RunningOrthanc> {
  const dir = await mkdtemp(join(tmpdir(), "kneegrade-orthanc-"));
  const dicomPort = options.dicomPort ?? (await freePort());
  const httpPort = await freePort();
  const config = orthancConfig({ name: "KneegradeTestPACS", dir, aet, dicomPort, httpPort });
  if (options.dicomWeb) {
    const plugin = dicomWebPlugin();
    if (!plugin) throw new Error("Orthanc's DICOMweb plugin is not installed (orthanc-dicomweb)");
    Object.assign(config, {
      Plugins: [plugin],
      DicomWeb: { Enable: true, Root: "/dicom-web/", EnableWado: true, WadoRoot: "/wado" },
    });
  }
  await writeFile(join(dir, "orthanc.json"), JSON.stringify(config));
  const bin = orthancBinary() ?? "Orthanc";
  const child: ChildProcess = spawn(bin, [`--logdir=${dir}`, join(dir, "orthanc.json")], {
    stdio: "ignore",
  });
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(`${httpUrl}/system`)).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline || child.exitCode !== null) throw new Error("Orthanc did not start");
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    dicomPort,
    httpUrl,
    aet,
    async stop() {
      await kill(child, "SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
  };
}
