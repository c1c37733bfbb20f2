/**
 * The soak's short form (docs/RELIABILITY.md, "Soak"): four minutes of steady arrivals from three
 * modalities with a burst, the toolkit's test model, and four faults — a worker killed while it
 * holds a job, Redis restarted without its data, PostgreSQL restarted, the PACS stopped. Every knee
 * study sent must be reported exactly once with its SR in the PACS, the malformed objects refused
 * with their reasons, the non-knee studies skipped, and each fault recovered.
 * `npm run soak` runs the long form.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { runSoak } from "./soak.ts";

const logDir = await mkdtemp(join(tmpdir(), "kneegrade-soak-logs-"));
afterAll(() => rm(logDir, { recursive: true, force: true }));

it("loses and duplicates nothing over four minutes of load with four faults", async () => {
  const report = await runSoak({
    minutes: 4,
    rate: 240,
    model: "test",
    faults: ["worker-kill", "redis-flush-restart", "postgres-restart", "pacs-stop"],
    drainMinutes: 5,
    sampleSeconds: 5,
    logDir,
    say: (line) => console.log(`[soak] ${line}`),
  });
  const summary = {
    sent: report.sent,
    reported: report.reported,
    lost: report.lost,
    duplicated: report.duplicated,
    latency: report.latencySeconds,
    faults: report.faults.map((f) => `${f.name}: ${f.recovered} in ${f.recoverySeconds} s`),
    failures: report.failures,
  };
  console.log(JSON.stringify(summary, null, 1));
  // Enough traffic to mean something: the steady rate, a burst, extras of every kind.
  expect(report.sent).toBeGreaterThanOrEqual(16);
  expect(Object.keys(report.byKind).sort()).toEqual(
    ["bilateral", "bilateral-small", "realdx", "single-knee", "two-part"].sort(),
  );
  expect(report.lostStudies).toEqual([]);
  expect(report.duplicatedStudies).toEqual([]);
  expect(report.reported).toBe(report.sent);
  expect(report.nonKnee.sent).toBeGreaterThan(0);
  expect(report.nonKnee.skipped).toBe(report.nonKnee.sent);
  expect(report.malformed.sent).toBeGreaterThan(0);
  expect(report.malformed.problems).toEqual([]);
  expect(report.faults.map((f) => f.name)).toEqual([
    "worker-kill",
    "redis-flush-restart",
    "postgres-restart",
    "pacs-stop",
  ]);
  for (const f of report.faults) expect(f.recovered, f.name).toBe(true);
  expect(report.faults[0]!.detail).not.toContain("holding 0 job");
  expect(report.failures).toEqual([]);
  expect(report.ok).toBe(true);
}, 1_200_000);
