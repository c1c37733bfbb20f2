/**
 * The soak's chart: Apache ECharts renders it as SVG on the server (no browser, no canvas), sharp
 * rasterises it. Six panels over the run's minutes, the faults shaded in each: latency per study
 * (last instance → SR in the PACS), RSS and V8 heap per process, event loop delay, queue depths,
 * PostgreSQL tables and spool.
 */
import * as echarts from "echarts";
import sharp from "sharp";
import type { SoakReport } from "./soak.ts";

const PANELS = [
  "latency s (last instance → SR in PACS)",
  "RSS MB",
  "V8 heap used MB",
  "event loop delay p99 ms",
  "queue depth (waiting + active + delayed)",
  "PostgreSQL tables / spool MB",
];

export async function soakChartPng(report: SoakReport): Promise<Buffer> {
  const t0 = Date.parse(report.startedAt);
  const minute = (t: number) => Number(((t - t0) / 60_000).toFixed(2));
  const width = 1200;
  const panelH = 190;
  const top = 60;
  const gap = 40;
  const height = top + PANELS.length * (panelH + gap) + 20;
  const chart = echarts.init(null, null, { renderer: "svg", ssr: true, width, height });
  const roles = [...new Set(report.samples.flatMap((s) => Object.keys(s.processes)))];
  const faults = report.faults
    .filter((f) => !f.skipped)
    .map((f) => [
      { xAxis: minute(f.start), name: f.name },
      { xAxis: Math.max(minute(f.end), minute(f.start) + 0.15) },
    ]);
  const xMax = Math.ceil(Math.max(report.minutes, ...report.samples.map((s) => minute(s.t))));
  const grid = PANELS.map((_, i) => ({
    left: 70,
    right: 170,
    top: top + i * (panelH + gap),
    height: panelH,
  }));
  const series: echarts.SeriesOption[] = [];
  const legends: string[][] = PANELS.map(() => []);
  const line = (panel: number, name: string, data: [number, number][]) => {
    legends[panel]!.push(name);
    series.push({
      type: "line",
      name,
      xAxisIndex: panel,
      yAxisIndex: panel,
      data,
      showSymbol: false,
      lineStyle: { width: 1.5 },
    });
  };
  legends[0]!.push("study");
  series.push({
    type: "scatter",
    name: "study",
    xAxisIndex: 0,
    yAxisIndex: 0,
    symbolSize: 4,
    data: report.studies
      .filter((s) => s.latency !== null)
      .map((s) => [Number((s.sentAt / 60).toFixed(2)), Number(s.latency!.toFixed(1))]),
  });
  for (const p of ["p50", "p95", "p99"] as const) {
    line(
      0,
      p,
      report.latencyOverTime
        .filter((w) => w.n > 0)
        .map((w) => [w.minute + 0.5, Number(w[p].toFixed(1))]),
    );
  }
  for (const role of roles) {
    const pts = (f: (p: SoakReport["samples"][number]["processes"][string]) => number) =>
      report.samples
        .filter((s) => s.processes[role])
        .map((s) => [minute(s.t), Number(f(s.processes[role]!).toFixed(1))] as [number, number]);
    line(
      1,
      role,
      pts((p) => p.rssMb),
    );
    line(
      2,
      role,
      pts((p) => p.heapMb),
    );
    line(
      3,
      role,
      pts((p) => p.loopP99Ms),
    );
  }
  for (const q of [...new Set(report.samples.flatMap((s) => Object.keys(s.queues)))]) {
    line(
      4,
      q,
      report.samples.map((s) => [minute(s.t), s.queues[q] ?? 0]),
    );
  }
  line(
    5,
    "PostgreSQL tables",
    report.samples.map((s) => [minute(s.t), Number(s.tablesMb.toFixed(1))]),
  );
  line(
    5,
    "spool",
    report.samples.map((s) => [minute(s.t), Number(s.spoolMb.toFixed(1))]),
  );
  // The faults, shaded in every panel.
  for (let i = 0; i < PANELS.length; i++) {
    series.push({
      type: "line",
      name: "fault",
      xAxisIndex: i,
      yAxisIndex: i,
      data: [],
      markArea: {
        silent: true,
        itemStyle: { color: "rgba(220,60,60,0.13)" },
        label: { show: i === 0, fontSize: 9, position: "insideTop", rotate: 90 },
        data: faults as never,
      },
    });
  }
  chart.setOption({
    animation: false,
    backgroundColor: "#ffffff",
    title: {
      text: `kneegrade soak: ${report.minutes} min, ${report.sent} knee studies sent, ${report.reported} reported, ${report.lost} lost, ${report.duplicated} duplicated — ${report.machine.cpu}, ${report.machine.cores} cores`,
      left: 10,
      top: 10,
      textStyle: { fontSize: 14 },
    },
    grid,
    xAxis: grid.map((_, i) => ({
      type: "value",
      gridIndex: i,
      min: 0,
      max: xMax,
      name: i === PANELS.length - 1 ? "minutes" : "",
      nameLocation: "middle",
      nameGap: 24,
    })),
    yAxis: PANELS.map((name, i) => ({
      type: "value",
      gridIndex: i,
      name,
      nameLocation: "end",
      nameTextStyle: { align: "left", fontSize: 11 },
    })),
    legend: grid.map((g, i) => ({
      orient: "vertical",
      right: 5,
      top: g.top,
      textStyle: { fontSize: 10 },
      data: legends[i],
    })),
    series,
  });
  const svg = chart.renderToSVGString();
  chart.dispose();
  return sharp(Buffer.from(svg)).png().toBuffer();
}
