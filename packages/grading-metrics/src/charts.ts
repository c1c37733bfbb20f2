/**
 * The figures of `kneegrade evaluate --png-dir` as SVG strings (pure: no I/O), the same drawings
 * as models/evaluate.py `draw_confusions` and `draw_reliability`: a confusion matrix with counts and
 * row-normalised shading, and a reliability diagram (accuracy per confidence bin against the
 * diagonal). The caller rasterises them (sharp/librsvg).
 */
import type { ReliabilityBin } from "./metrics.ts";

const FONT = "DejaVu Sans, sans-serif";

function escapeXml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c]!,
  );
}

function text(
  x: number,
  y: number,
  s: string,
  size: number,
  o: { fill?: string; anchor?: "start" | "middle" | "end"; weight?: string } = {},
): string {
  return `<text x="${x}" y="${y}" font-family="${FONT}" font-size="${size}" fill="${o.fill ?? "#000000"}" text-anchor="${o.anchor ?? "start"}"${o.weight ? ` font-weight="${o.weight}"` : ""}>${escapeXml(s)}</text>`;
}

function rect(x: number, y: number, w: number, h: number, fill: string, stroke?: string): string {
  return `<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="${fill}"${stroke ? ` stroke="${stroke}" stroke-width="1"` : ""}/>`;
}

const rgb = (r: number, g: number, b: number) =>
  `rgb(${Math.round(r)},${Math.round(g)},${Math.round(b)})`;

/** A generous estimate of a line's width in DejaVu Sans (bold glyphs average ~0.62 em). */
const textWidth = (s: string, size: number) => Math.ceil(s.length * size * 0.66);

function svg(width: number, height: number, body: string[], background = "#ffffff"): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" xml:space="preserve" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    rect(0, 0, width, height, background),
    ...body,
    "</svg>",
  ].join("\n");
}

/**
 * The confusion matrix: rows = true grade, columns = predicted grade, counts in the cells, each
 * row shaded by its share (white = none, orange = the whole row, the toolkit's colours). Title:
 * accuracy and QWK.
 */
export function confusionSvg(
  m: { n: number; accuracy: number; qwk: number; confusion: number[][] },
  heading: string,
  /** "dark": for a dark page (the review pages), with the agreeing diagonal outlined. */
  theme: "light" | "dark" = "light",
): string {
  const dark = theme === "dark";
  const ink = dark ? "#e8e8e8" : "#000000";
  const k = m.confusion.length;
  const cell = 64;
  const ox = 70;
  const oy = 70;
  const width = Math.max(ox + k * cell + 30, 20 + textWidth(heading, 15));
  const height = oy + k * cell + 70;
  const body = [
    text(10, 22, heading, 15, { weight: "bold", fill: ink }),
    text(10, 44, `n ${m.n}  accuracy ${m.accuracy.toFixed(3)}  QWK ${m.qwk.toFixed(3)}`, 14, {
      fill: ink,
    }),
  ];
  m.confusion.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    body.push(
      text(ox - 10, oy + i * cell + cell / 2 + 5, `KL${i}`, 13, { anchor: "end", fill: ink }),
    );
    row.forEach((count, j) => {
      const f = total ? count / total : 0;
      const x = ox + j * cell;
      const y = oy + i * cell;
      // models/evaluate.py: BGR 255 - f * (200, 120, 40); dark: from the page's panel to blue.
      const fill = dark
        ? rgb(28 + f * (45 - 28), 28 + f * (95 - 28), 28 + f * (160 - 28))
        : rgb(255 - f * 40, 255 - f * 120, 255 - f * 200);
      body.push(rect(x, y, cell, cell, fill, dark ? "#333333" : "#a0a0a0"));
      body.push(
        text(x + cell / 2, y + cell / 2 + 6, String(count), 16, {
          anchor: "middle",
          fill: dark || f > 0.55 ? "#ffffff" : "#000000",
        }),
      );
    });
  });
  for (let j = 0; j < k; j++) {
    body.push(
      text(ox + j * cell + cell / 2, oy + k * cell + 20, `KL${j}`, 13, {
        anchor: "middle",
        fill: ink,
      }),
    );
  }
  if (dark) {
    // The cells where both agree, outlined in the page's accent colour.
    for (let i = 0; i < k; i++) {
      body.push(
        `<rect x="${ox + i * cell + 1.5}" y="${oy + i * cell + 1.5}" width="${cell - 3}" height="${cell - 3}" fill="none" stroke="#ffd400" stroke-width="3"/>`,
      );
    }
  }
  body.push(
    text(ox + (k * cell) / 2, height - 14, "true (rows) / predicted (cols)", 13, {
      anchor: "middle",
      fill: dark ? "#aaaaaa" : "#505050",
    }),
  );
  return svg(width, height, body, dark ? "#1c1c1c" : "#ffffff");
}

/**
 * The reliability diagram: for each confidence bin with an image, a bar from the bin's lo to hi as
 * high as its accuracy, shaded by its share of the images; the diagonal is perfect calibration.
 * Title: accuracy and ECE.
 */
export function reliabilitySvg(
  r: { accuracy: number; ece: number; reliability: ReliabilityBin[] },
  heading: string,
): string {
  const size = 320;
  const ox = 60;
  const oy = 66;
  const width = Math.max(ox + size + 30, 20 + textWidth(heading, 15));
  const height = oy + size + 64;
  const total = Math.max(
    1,
    r.reliability.reduce((a, b) => a + b.n, 0),
  );
  const X = (v: number) => ox + v * size;
  const Y = (v: number) => oy + size - v * size;
  const body = [
    text(10, 22, heading, 15, { weight: "bold" }),
    text(10, 44, `accuracy ${r.accuracy.toFixed(3)}  ECE ${r.ece.toFixed(3)}`, 14),
    rect(ox, oy, size, size, "#ffffff", "#a0a0a0"),
  ];
  for (const b of r.reliability) {
    if (!b.n || b.accuracy === null) continue;
    const share = Math.min(1, (4 * b.n) / total);
    // models/evaluate.py: BGR 255 - share * (120, 160, 60).
    const fill = rgb(255 - share * 60, 255 - share * 160, 255 - share * 120);
    const x0 = X(b.lo) + 1;
    const w = Math.max(1, X(b.hi) - X(b.lo) - 2);
    body.push(rect(x0, Y(b.accuracy), w, b.accuracy * size, fill, "#5a5a5a"));
  }
  body.push(
    `<line x1="${X(0)}" y1="${Y(0)}" x2="${X(1)}" y2="${Y(1)}" stroke="#c80000" stroke-width="1.5"/>`,
  );
  for (const t of [0, 0.5, 1]) {
    body.push(text(X(t), oy + size + 18, t.toFixed(1), 12, { anchor: "middle" }));
    body.push(text(ox - 8, Y(t) + 4, t.toFixed(1), 12, { anchor: "end" }));
  }
  body.push(
    text(ox + size / 2, height - 14, "confidence (x) / accuracy (y)", 13, {
      anchor: "middle",
      fill: "#505050",
    }),
  );
  return svg(width, height, body);
}
