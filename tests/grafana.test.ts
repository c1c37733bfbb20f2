/**
 * infra/grafana/kneegrade.json: valid dashboard JSON whose every query names metrics that kneegrade
 * really exports (a renamed metric would otherwise leave an empty panel nobody notices).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Db } from "@kneegrade/db";
import { createMetrics, registerStateGauges } from "@kneegrade/ops";
import { expect, it } from "vitest";
import { REPO_ROOT } from "./helpers/paths.ts";

interface Panel {
  title: string;
  targets: { expr: string }[];
}

it("queries only metrics that kneegrade exports", async () => {
  const dashboard = JSON.parse(
    readFileSync(join(REPO_ROOT, "infra/grafana/kneegrade.json"), "utf8"),
  ) as { uid: string; panels: Panel[] };
  expect(dashboard.uid).toBe("kneegrade");
  const metrics = createMetrics({ defaultMetrics: true });
  registerStateGauges(metrics, { db: {} as Db, queues: [] });
  const exported = new Set(
    (await metrics.registry.getMetricsAsJSON()).flatMap((m) =>
      String(m.type) === "histogram"
        ? [`${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`]
        : [m.name],
    ),
  );
  const used = new Set<string>();
  for (const panel of dashboard.panels) {
    expect(panel.targets.length, panel.title).toBeGreaterThan(0);
    for (const t of panel.targets) {
      for (const m of t.expr.matchAll(/\b((?:kneegrade|process|nodejs)_[a-z0-9_]+)\b/g)) {
        used.add(m[1]!);
      }
    }
  }
  expect([...used].filter((name) => !exported.has(name))).toEqual([]);
  // Every kneegrade metric is on the dashboard.
  const usedBase = new Set([...used].map((n) => n.replace(/_(bucket|sum|count)$/, "")));
  const ours = (await metrics.registry.getMetricsAsJSON())
    .map((m) => m.name)
    .filter((n) => n.startsWith("kneegrade_"));
  expect(ours.filter((n) => !usedBase.has(n) && !used.has(n))).toEqual([]);
});
