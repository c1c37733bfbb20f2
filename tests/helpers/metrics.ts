/** Reading a kneegrade ops server the way Prometheus and a kubelet do: plain HTTP. */

/** One sample of a Prometheus text exposition, e.g. `name{a="b"} 3`. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!;
    }
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The value of the sample with this name and (at least) these labels; 0 when absent. */
export function sampleValue(
  samples: Sample[],
  name: string,
  labels: Record<string, string> = {},
): number {
  const found = samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  return found.reduce((a, s) => a + s.value, 0);
}

export async function scrape(port: number, host = "127.0.0.1"): Promise<Sample[]> {
  const r = await fetch(`http://${host}:${port}/metrics`);
  if (!r.ok) throw new Error(`/metrics answered ${r.status}`);
  return parseMetrics(await r.text());
}

export async function readyz(port: number): Promise<{
  status: number;
  body: { ready: boolean; checks: Record<string, { ok: boolean; error?: string }> };
}> {
  const r = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: r.status, body: (await r.json()) as Awaited<ReturnType<typeof readyz>>["body"] };
}
