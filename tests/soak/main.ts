/**
 * `npm run soak [-- --minutes 30 --rate 120 --model shipped --faults all --out var/soak]`: a hospital
 * day compressed, on this machine (see docs/RELIABILITY.md). Writes report.json and chart.png to
 * --out and exits 1 when a knee study was lost or duplicated, a malformed object not refused with
 * its reason, a non-knee study not skipped, a fault not recovered or memory grew beyond the bound.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../helpers/paths.ts";
import { soakChartPng } from "./chart.ts";
import { FAULTS, type FaultName, runSoak } from "./soak.ts";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "30" },
    rate: { type: "string", default: "120" },
    model: { type: "string", default: "shipped" },
    faults: { type: "string", default: "all" },
    drain: { type: "string", default: "10" },
    out: { type: "string", default: join(REPO_ROOT, "var/soak") },
  },
});
const minutes = Number(values.minutes);
const rate = Number(values.rate);
if (!(minutes > 0) || !(rate > 0)) throw new Error("--minutes and --rate must be positive numbers");
if (values.model !== "shipped" && values.model !== "test")
  throw new Error("--model must be shipped or test");
const faults = (values.faults === "all" ? [...FAULTS] : values.faults!.split(",")) as FaultName[];
for (const f of faults) {
  if (!FAULTS.includes(f)) throw new Error(`--faults: unknown ${f}; use ${FAULTS.join(",")}`);
}
const out = resolve(values.out!);
await mkdir(out, { recursive: true });

const started = Date.now();
const report = await runSoak({
  minutes,
  rate,
  faults,
  model: values.model,
  drainMinutes: Number(values.drain),
  logDir: join(out, "logs"),
  say: (line) =>
    console.log(`[soak ${((Date.now() - started) / 60_000).toFixed(1).padStart(5)} min] ${line}`),
});
await writeFile(join(out, "report.json"), `${JSON.stringify(report, null, 1)}\n`);
await writeFile(join(out, "chart.png"), await soakChartPng(report));

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");
console.log(
  `sent ${report.sent} knee studies (${Object.entries(report.byKind)
    .map(([k, v]) => `${k} ${v}`)
    .join(
      ", ",
    )}), ${report.repeats} repeated sends; reported ${report.reported}, lost ${report.lost}, duplicated ${report.duplicated}`,
);
console.log(
  `non-knee ${report.nonKnee.skipped}/${report.nonKnee.sent} skipped; malformed ${report.malformed.refusedWithReason}/${report.malformed.sent} refused with their reason; ${report.sendRetries} sends retried by the modalities`,
);
const l = report.latencySeconds;
console.log(
  `latency last instance → SR in PACS: p50 ${f1(l.p50)} s, p95 ${f1(l.p95)} s, p99 ${f1(l.p99)} s, max ${f1(l.max)} s; CPU ${f1(report.cpuSecondsPerStudy)} s per study`,
);
for (const f of report.faults) {
  console.log(
    `fault ${f.name}: ${f.skipped ? `skipped (${f.skipped})` : `${f.detail}; recovered ${f.recovered ? `in ${f1(f.recoverySeconds ?? Number.NaN)} s` : "NO"}`}`,
  );
}
for (const [role, m] of Object.entries(report.memory)) {
  console.log(
    m.unmeasured
      ? `${role}: RSS not measured (restarted too late in the run to settle)`
      : `${role}: RSS ${f1(m.startMb)} → ${f1(m.endMb)} MB (bound +${f1(m.boundMb)} MB) ${m.ok ? "ok" : "GREW"}`,
  );
}
for (const e of report.unexpectedExits) {
  console.log(
    `unexpected exit: ${e.role} (${e.code ?? e.signal}) at ${new Date(e.at).toISOString()}`,
  );
}
console.log(`${out}/report.json, ${out}/chart.png`);
if (!report.ok) {
  console.log(`FAILED: ${report.failures.join("; ")}`);
  process.exit(1);
}
console.log("ok");
process.exit(0);
