import { mulberry32 } from "./draw.ts";

/**
 * A foot, dorsoplantar, as 8-bit display grey (1,600 × 2,000 px, ≈ 0.15 mm): soft tissue, a tarsal
 * block and five metatarsals with their phalanges fanning out — bone on the scale of a knee's,
 * but no knee joint. A negative for the localiser (feet and ankles were graded as knees).
 */
export function drawFoot(seed = 1): { width: number; height: number; data: Uint8Array } {
  const w = 1600;
  const h = 2000;
  const img = new Float32Array(w * h).fill(0.04);
  const rand = mulberry32(seed);
  /** A bone (or soft tissue): a capsule of radius r from (x0, y0) to (x1, y1), cortex brighter. */
  const capsule = (x0: number, y0: number, x1: number, y1: number, r: number, v: number) => {
    const dx = x1 - x0;
    const dy = y1 - y0;
    const len2 = dx * dx + dy * dy || 1;
    for (
      let y = Math.max(0, Math.floor(Math.min(y0, y1) - r));
      y <= Math.min(h - 1, Math.max(y0, y1) + r);
      y++
    ) {
      for (
        let x = Math.max(0, Math.floor(Math.min(x0, x1) - r));
        x <= Math.min(w - 1, Math.max(x0, x1) + r);
        x++
      ) {
        const t = Math.max(0, Math.min(1, ((x - x0) * dx + (y - y0) * dy) / len2));
        const d = Math.hypot(x - (x0 + t * dx), y - (y0 + t * dy));
        if (d < r) img[y * w + x] = Math.max(img[y * w + x]!, v * (d > 0.75 * r ? 1 : 0.8));
      }
    }
  };
  capsule(800, 1850, 800, 500, 420, 0.22);
  capsule(800, 1750, 800, 1250, 230, 0.6);
  for (let k = 0; k < 5; k++) {
    const base = 560 + k * 120;
    const head = 480 + k * 160;
    const bend = (k - 2) * 10;
    capsule(base, 1250, head, 700, 38, 0.7);
    capsule(head, 690, head + bend, 520, 30, 0.65);
    capsule(head + bend, 510, head + 1.4 * bend, 420, 26, 0.6);
  }
  const data = new Uint8Array(w * h);
  for (let i = 0; i < data.length; i++) {
    data[i] = Math.max(0, Math.min(255, Math.round((img[i]! + (rand() - 0.5) * 0.04) * 255)));
  }
  return { width: w, height: h, data };
}
