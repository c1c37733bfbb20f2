/** The `kneegrade` command line. Each subcommand validates the configuration before it connects. */
import { type Config, ConfigError, loadConfig } from "@kneegrade/config";
import { createDb } from "@kneegrade/db";
import { cEcho, cStoreFiles, type DicomPeer } from "@kneegrade/dicom";
import { createLogger } from "@kneegrade/log";
import { Command, Option } from "commander";
import { parseOnly, serve } from "./serve.ts";
import { collectStatus, formatStatus } from "./status.ts";

function config(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`kneegrade: ${error.message}`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
}

interface PeerOptions {
  pacs?: boolean;
  host?: string;
  port?: string;
  aet?: string;
  callingAet?: string;
  timeout: string;
}

/** The listener by default; the PACS with --pacs; anything with --host/--port/--aet. */
function peer(c: Config, o: PeerOptions): DicomPeer {
  const base = o.pacs
    ? { host: c.PACS_HOST, port: c.PACS_PORT, calledAet: c.PACS_AET }
    : {
        host: c.LISTENER_HOST === "0.0.0.0" ? "127.0.0.1" : c.LISTENER_HOST,
        port: c.LISTENER_PORT,
        calledAet: c.LISTENER_AET,
      };
  return {
    host: o.host ?? base.host,
    port: o.port ? Number(o.port) : base.port,
    calledAet: o.aet ?? base.calledAet,
    callingAet: o.callingAet ?? "KNEEGRADE_SCU",
    timeoutMs: Number(o.timeout) * 1000,
  };
}

function withPeerOptions(cmd: Command): Command {
  return cmd
    .option(
      "--pacs",
      "talk to the configured PACS (PACS_HOST/PACS_PORT/PACS_AET) instead of the listener",
    )
    .option("--host <host>", "peer host")
    .option("--port <port>", "peer port")
    .option("--aet <aet>", "called AE title")
    .option("--calling-aet <aet>", "our AE title", "KNEEGRADE_SCU")
    .option("--timeout <seconds>", "give up after this many seconds", "30");
}

const program = new Command()
  .name("kneegrade")
  .description("Knee osteoarthritis grading for every knee radiograph, as a DICOM service");

program
  .command("serve")
  .description("run the listener, worker and reporter in this process")
  .addOption(new Option("--only <services>", "comma list of listener,worker,reporter"))
  .action(async (o: { only?: string }) => {
    const c = config();
    const log = createLogger("kneegrade", c.LOG_LEVEL);
    try {
      await serve(c, parseOnly(o.only), log);
    } catch (error) {
      log.fatal(
        { event: "serve.failed", err: (error as Error).message },
        "kneegrade could not start",
      );
      process.exit(1);
    }
  });

withPeerOptions(
  program.command("echo").description("C-ECHO the listener (or the PACS with --pacs)"),
).action(async (o: PeerOptions) => {
  const p = peer(config(), o);
  const outcome = await cEcho(p);
  const ok = outcome.status === 0;
  console.log(
    `${ok ? "ok" : "failed"}: C-ECHO ${p.calledAet}@${p.host}:${p.port}${ok ? "" : ` (${outcome.error})`}`,
  );
  process.exit(ok ? 0 : 1);
});

withPeerOptions(
  program
    .command("send")
    .description("C-STORE files or directories to the listener (or the PACS with --pacs)")
    .argument("<paths...>", "DICOM files or directories"),
).action(async (paths: string[], o: PeerOptions) => {
  const p = peer(config(), o);
  const outcomes = await cStoreFiles(p, paths);
  let failed = 0;
  for (const r of outcomes) {
    const ok = r.status === 0;
    if (!ok) failed += 1;
    const status = r.status === null ? "" : ` status 0x${r.status.toString(16).padStart(4, "0")}`;
    console.log(`${ok ? "stored" : "failed"}: ${r.item}${status}${r.error ? ` (${r.error})` : ""}`);
  }
  console.log(
    `${outcomes.length - failed} of ${outcomes.length} sent to ${p.calledAet}@${p.host}:${p.port}`,
  );
  process.exit(failed === 0 && outcomes.length > 0 ? 0 : 1);
});

program
  .command("status")
  .description("studies, instances, skipped studies, jobs per queue and state, deliveries")
  .option("--json", "machine-readable output (a stable interface)")
  .option("--recent <n>", "how many recent studies to list", "10")
  .action(async (o: { json?: boolean; recent: string }) => {
    const c = config();
    const db = createDb(c.DATABASE_URL);
    try {
      const report = await collectStatus(db, c, Number(o.recent));
      console.log(o.json ? JSON.stringify(report, null, 2) : formatStatus(report));
    } finally {
      await db.$disconnect();
    }
  });

await program.parseAsync();
