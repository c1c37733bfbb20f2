/**
 * The grey-scale pipeline of PS3.4 N.2.1 / PS3.3 C.11, for one frame of a radiograph:
 * stored values -> Modality LUT (rescale or LUT Sequence) -> VOI (window, VOI LUT or an automatic
 * window) -> 8-bit display grey, inverted for MONOCHROME1 (so 0 is black and 255 white).
 */

/** A LUT as the Modality LUT Sequence and VOI LUT Sequence carry it (LUT Descriptor + LUT Data). */
export interface LookupTable {
  /** Stored (Modality LUT) or modality value (VOI LUT) mapped to data[0]. */
  firstMapped: number;
  /** Bits per entry, from the third value of the LUT Descriptor (output range 0..2^bits-1). */
  bits: number;
  data: Uint16Array;
}

export type ModalityTransform =
  | { kind: "rescale"; slope: number; intercept: number }
  | { kind: "lut"; lut: LookupTable };

export type VoiFunction = "LINEAR" | "LINEAR_EXACT" | "SIGMOID";

/** The VOI transform as applied; `auto` maps [lo, hi] linearly onto black..white. */
export type VoiTransform =
  | { kind: "window"; center: number; width: number; fn: VoiFunction }
  | { kind: "voi-lut"; lut: LookupTable }
  | { kind: "auto"; lo: number; hi: number };

/** Applies a LUT: inputs below the first mapped value take the first entry, above the last the last. */
function lookUp(lut: LookupTable, x: number): number {
  const n = lut.data.length;
  let i = Math.round(x) - lut.firstMapped;
  if (i < 0) i = 0;
  else if (i > n - 1) i = n - 1;
  return lut.data[i]!;
}

export function modalityValue(m: ModalityTransform, stored: number): number {
  return m.kind === "rescale" ? stored * m.slope + m.intercept : lookUp(m.lut, stored);
}

/**
 * VOI output in [0, 1] for a modality value x.
 * LINEAR (PS3.3 C.11.2.1.2.1):
 *   x <= c - 0.5 - (w-1)/2 -> 0;  x > c - 0.5 + (w-1)/2 -> 1;  else ((x - (c - 0.5)) / (w-1) + 0.5)
 * LINEAR_EXACT (C.11.2.1.3.2):
 *   x <= c - w/2 -> 0;  x > c + w/2 -> 1;  else (x - c) / w + 0.5
 * SIGMOID (C.11.2.1.3.1): 1 / (1 + exp(-4 (x - c) / w))
 * VOI LUT: LUT output / (2^bits - 1).
 * Automatic: (x - lo) / (hi - lo), clamped to [0, 1] (LINEAR_EXACT with c = (lo+hi)/2, w = hi-lo);
 * when hi = lo, values below are black, above white and equal mid-grey.
 */
export function voiOutput(v: VoiTransform, x: number): number {
  if (v.kind === "voi-lut") return lookUp(v.lut, x) / (2 ** v.lut.bits - 1);
  if (v.kind === "auto") {
    if (v.hi <= v.lo) return x < v.lo ? 0 : x > v.lo ? 1 : 0.5;
    return x <= v.lo ? 0 : x >= v.hi ? 1 : (x - v.lo) / (v.hi - v.lo);
  }
  const c = v.center;
  const w = v.width;
  const fn = v.fn;
  if (fn === "SIGMOID") return 1 / (1 + Math.exp((-4 * (x - c)) / w));
  if (fn === "LINEAR_EXACT") {
    if (x <= c - w / 2) return 0;
    if (x > c + w / 2) return 1;
    return (x - c) / w + 0.5;
  }
  const lower = c - 0.5 - (w - 1) / 2;
  const upper = c - 0.5 + (w - 1) / 2;
  if (x <= lower) return 0;
  if (x > upper) return 1;
  return (x - (c - 0.5)) / (w - 1) + 0.5; // only reached when w > 1
}

/** 8-bit display grey: 0 black, 255 white. MONOCHROME1 shows its minimum as white. */
export function displayGrey(voi: number, monochrome1: boolean): number {
  const g = Math.round(voi * 255);
  const clamped = g < 0 ? 0 : Math.min(g, 255);
  return monochrome1 ? 255 - clamped : clamped;
}

/** Whether a window from the header can be used (PS3.3 C.11.2.1.2: width >= 1 for LINEAR, > 0 otherwise). */
export function validWindow(center: number, width: number, fn: VoiFunction): boolean {
  if (!Number.isFinite(center) || !Number.isFinite(width)) return false;
  return fn === "LINEAR" ? width >= 1 : width > 0;
}

export const AUTO_LOW_PERCENTILE = 0.005;
export const AUTO_HIGH_PERCENTILE = 0.995;

/**
 * The automatic window: nearest-rank percentiles 0.5 % and 99.5 % of the modality values
 * (rank ceil(p * N), 1-based), to be mapped linearly onto black..white.
 * `pairs` lists (value, count) in any order.
 */
export function autoWindow(pairs: { value: number; count: number }[]): { lo: number; hi: number } {
  const sorted = pairs.filter((p) => p.count > 0).sort((a, b) => a.value - b.value);
  const total = sorted.reduce((s, p) => s + p.count, 0);
  if (total === 0) return { lo: 0, hi: 0 };
  const at = (p: number): number => {
    const rank = Math.max(1, Math.ceil(p * total));
    let seen = 0;
    for (const e of sorted) {
      seen += e.count;
      if (seen >= rank) return e.value;
    }
    return sorted[sorted.length - 1]!.value;
  };
  return { lo: at(AUTO_LOW_PERCENTILE), hi: at(AUTO_HIGH_PERCENTILE) };
}

export interface RenderedFrame {
  /** May be computed on first read (from `stored`, which must not change meanwhile). */
  readonly values: Float32Array;
  display: Uint8Array;
  voi: VoiTransform;
}

/** Stored values, one per pixel: 32-bit, or at a decoder's sample width. */
export type StoredArray = Int32Array | Int16Array | Uint16Array | Int8Array | Uint8Array;

/** A per-pixel loop of `render`, on its own so that it is optimised as one tight loop. */
function lookUpAll<T extends Float32Array | Uint8Array>(
  stored: StoredArray,
  min: number,
  table: T,
  out: T,
): T {
  const n = stored.length;
  for (let i = 0; i < n; i++) out[i] = table[stored[i]! - min]!;
  return out;
}

/**
 * Runs the pipeline over a frame. `chooseVoi` receives a function that lists the modality values
 * with their counts (for the automatic window) and returns the VOI to apply.
 * Stored values within a 16-bit range go through tables built once per image; wider ones are
 * computed pixel by pixel.
 */
export function render(
  stored: StoredArray,
  range: { min: number; max: number },
  modality: ModalityTransform,
  chooseVoi: (histogram: () => { value: number; count: number }[]) => VoiTransform,
  monochrome1: boolean,
): RenderedFrame {
  const n = stored.length;
  const display = new Uint8Array(n);
  const min = range.min;
  const span = range.max - min + 1;
  if (span <= 1 << 16) {
    const valueByStored = new Float32Array(span);
    for (let i = 0; i < span; i++) valueByStored[i] = modalityValue(modality, min + i);
    const voi = chooseVoi(() => {
      const counts = new Uint32Array(span);
      for (let i = 0; i < n; i++) {
        const k = (stored[i] as number) - min;
        counts[k] = (counts[k] as number) + 1;
      }
      const byValue = new Map<number, number>();
      for (let i = 0; i < span; i++) {
        const c = counts[i]!;
        if (c === 0) continue;
        const v = valueByStored[i]!;
        byValue.set(v, (byValue.get(v) ?? 0) + c);
      }
      return [...byValue].map(([value, count]) => ({ value, count }));
    });
    const greyByStored = new Uint8Array(span);
    for (let i = 0; i < span; i++)
      greyByStored[i] = displayGrey(voiOutput(voi, valueByStored[i]!), monochrome1);
    lookUpAll(stored, min, greyByStored, display);
    // The modality values (12 MB for a 1760² image) are made on first use: grading needs only
    // the display grey.
    let values: Float32Array | undefined;
    return {
      get values() {
        values ??= lookUpAll(stored, min, valueByStored, new Float32Array(n));
        return values;
      },
      display,
      voi,
    };
  }
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = modalityValue(modality, stored[i]!);
  const voi = chooseVoi(() => {
    const byValue = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const v = values[i]!;
      byValue.set(v, (byValue.get(v) ?? 0) + 1);
    }
    return [...byValue].map(([value, count]) => ({ value, count }));
  });
  for (let i = 0; i < n; i++) display[i] = displayGrey(voiOutput(voi, values[i]!), monochrome1);
  return { values, display, voi };
}
