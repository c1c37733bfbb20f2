/** A real Orthanc (Debian's package) as the PACS, on loopback ports of its own. */
import { type ChildProcess, spawn } from "node:child_process";
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

export async function startOrthanc(aet = "ORTHANC"): Promise<RunningOrthanc> {
  const dir = await mkdtemp(join(tmpdir(), "kneegrade-orthanc-"));
  const dicomPort = await freePort();
  const httpPort = await freePort();
  const config = {
    Name: "KneegradeTestPACS",
    StorageDirectory: join(dir, "db"),
    IndexDirectory: join(dir, "db"),
    DicomAet: aet,
    DicomPort: dicomPort,
    HttpPort: httpPort,
    HttpBindAddress: "127.0.0.1",
    DicomBindAddress: "127.0.0.1",
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    DicomCheckCalledAet: true,
    DicomAlwaysAllowStore: true,
    DicomAlwaysAllowEcho: true,
    Plugins: [],
  };
  await writeFile(join(dir, "orthanc.json"), JSON.stringify(config));
  // Debian installs it in /usr/sbin, which is not on every user's PATH.
  const bin = existsSync("/usr/sbin/Orthanc") ? "/usr/sbin/Orthanc" : "Orthanc";
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
