/**
 * Normalised cross-correlation (NCC) of the knee templates with an image, on three features:
 * intensity, vertical-gradient magnitude and horizontal-gradient magnitude (see localise.ts).
 *
 * Two implementations of the same arithmetic:
 * - {@link kneeScoreMap}: plain JavaScript, for single patches (refinement's last step, per-grade
 *   scoring) and as the reference the other is tested against;
 * - {@link OnnxCorrelator}: the O(H·W·n²) numerator as one grouped ONNX `Conv`
 *   (assets/knee-ncc.onnx, built by `python3 -m models.knee_ncc`; the templates are an input, so
 *   the graph holds no weights and any template set runs on it)
 *   in onnxruntime-node — MLAS kernels, run on onnxruntime's own thread, off the event loop. Each
 *   window's norm comes from float64 integral images in JavaScript (O(H·W)).
 */
import * as ort from "onnxruntime-node";

/** A template triple at one size, each zero-mean and unit-norm (ready for NCC). */
export interface KneeTemplate {
  size: number;
  /** The KL grades whose crops it averages. */
  grades: number[];
  mean: Float32Array;
  vgrad: Float32Array;
  hgrad: Float32Array;
}

export interface ScoreMap {
  map: Float32Array;
  width: number;
  height: number;
}

export function zeroMeanUnitNorm(v: Float32Array): Float32Array {
  let mean = 0;
  for (const x of v) mean += x;
  mean /= v.length;
  let norm = 0;
  for (let i = 0; i < v.length; i++) {
    v[i] = v[i]! - mean;
    norm += v[i]! * v[i]!;
  }
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < v.length; i++) v[i] = v[i]! / norm;
  return v;
}

/** Integral images of an image and of its square (float64: no cancellation in the variance). */
function integrals(image: Float32Array, width: number, height: number) {
  const iw = width + 1;
  const sum = new Float64Array(iw * (height + 1));
  const sq = new Float64Array(iw * (height + 1));
  for (let y = 0; y < height; y++) {
    let rs = 0;
    let rq = 0;
    for (let x = 0; x < width; x++) {
      const v = image[y * width + x]!;
      rs += v;
      rq += v * v;
      sum[(y + 1) * iw + x + 1] = sum[y * iw + x + 1]! + rs;
      sq[(y + 1) * iw + x + 1] = sq[y * iw + x + 1]! + rq;
    }
  }
  return { sum, sq, iw };
}

/**
 * The n×n windows' norms: sqrt of the sum of squared deviations from the window mean, 0 for a flat
 * window (no structure to match). `out[y * mw + x]` for every valid position.
 */
function windowNorms(image: Float32Array, width: number, height: number, n: number, stride = 1) {
  const mw = width - n + 1;
  const mh = height - n + 1;
  const out = new Float64Array(Math.max(0, mw) * Math.max(0, mh));
  if (mw <= 0 || mh <= 0) return out;
  const { sum, sq, iw } = integrals(image, width, height);
  const area = n * n;
  for (let y = 0; y < mh; y += stride) {
    for (let x = 0; x < mw; x += stride) {
      const a = y * iw + x;
      const b = a + n;
      const c = (y + n) * iw + x;
      const d = c + n;
      const s = sum[d]! - sum[b]! - sum[c]! + sum[a]!;
      const q = sq[d]! - sq[b]! - sq[c]! + sq[a]!;
      const variance = q - (s * s) / area;
      out[y * mw + x] = variance <= 1e-6 * area ? 0 : Math.sqrt(variance);
    }
  }
  return out;
}

/** NCC map of a zero-mean unit-norm n×n template over an image (valid positions only). */
export function nccMap(
  image: Float32Array,
  width: number,
  height: number,
  tpl: Float32Array,
  n: number,
  /** Compute every `stride`-th position in x and y only (the others stay -1). */
  stride = 1,
): ScoreMap {
  const mw = Math.max(0, width - n + 1);
  const mh = Math.max(0, height - n + 1);
  const map = new Float32Array(mw * mh).fill(-1);
  const norms = windowNorms(image, width, height, n, stride);
  for (let y = 0; y < mh; y += stride) {
    for (let x = 0; x < mw; x += stride) {
      const norm = norms[y * mw + x]!;
      if (norm === 0) continue;
      let dot = 0;
      for (let ty = 0; ty < n; ty++) {
        const row = (y + ty) * width + x;
        const trow = ty * n;
        for (let tx = 0; tx < n; tx++) dot += tpl[trow + tx]! * image[row + tx]!;
      }
      // The template is zero-mean, so the image's mean drops out of the numerator.
      map[y * mw + x] = dot / norm;
    }
  }
  return { map, width: mw, height: mh };
}

/** |I(y+1, x) - I(y, x)|, the last row repeated: the joint line and the bone ends stand out. */
export function verticalGradient(image: Float32Array, width: number, height: number): Float32Array {
  const g = new Float32Array(width * height);
  for (let y = 0; y < height - 1; y++) {
    for (let x = 0; x < width; x++) {
      g[y * width + x] = Math.abs(image[(y + 1) * width + x]! - image[y * width + x]!);
    }
  }
  if (height > 1) g.copyWithin((height - 1) * width, (height - 2) * width, (height - 1) * width);
  return g;
}

/** |I(y, x+1) - I(y, x)|, the last column repeated: the bone's outline. */
export function horizontalGradient(
  image: Float32Array,
  width: number,
  height: number,
): Float32Array {
  const g = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width - 1; x++)
      g[row + x] = Math.abs(image[row + x + 1]! - image[row + x]!);
    if (width > 1) g[row + width - 1] = g[row + width - 2]!;
  }
  return g;
}

const features = (image: Float32Array, width: number, height: number) => [
  image,
  verticalGradient(image, width, height),
  horizontalGradient(image, width, height),
];

/**
 * The knee score at every position: the mean of three NCCs — intensity with the mean knee, the
 * vertical gradient with the mean knee's (the joint line and bone ends: intensity alone also
 * matches any long bone, a bright column with dark sides), and the horizontal gradient with the
 * mean knee's (the condyles' and plateau's outline, which pins the size).
 */
export function kneeScoreMap(
  image: Float32Array,
  width: number,
  height: number,
  t: KneeTemplate,
  stride = 1,
): ScoreMap {
  const [f0, f1, f2] = features(image, width, height) as [Float32Array, Float32Array, Float32Array];
  const a = nccMap(f0, width, height, t.mean, t.size, stride);
  const b = nccMap(f1, width, height, t.vgrad, t.size, stride);
  const c = nccMap(f2, width, height, t.hgrad, t.size, stride);
  for (let i = 0; i < a.map.length; i++) a.map[i] = (a.map[i]! + b.map[i]! + c.map[i]!) / 3;
  return a;
}

const NCC_GRAPH = new URL("../assets/knee-ncc.onnx", import.meta.url);

/**
 * The four polyphase components of `planes` (each w×h): out plane p·4 + 2·py + px holds
 * plane p's pixels (2y + py, 2x + px), zero where that falls outside (odd sizes).
 */
function polyphase(planes: Float32Array[], w: number, h: number, stride: 1 | 2) {
  if (stride === 1) {
    const out = new Float32Array(planes.length * w * h);
    for (const [i, p] of planes.entries()) out.set(p, i * w * h);
    return { data: out, w, h, channels: 1 };
  }
  const w2 = Math.ceil(w / 2);
  const h2 = Math.ceil(h / 2);
  const out = new Float32Array(planes.length * 4 * w2 * h2);
  planes.forEach((p, i) => {
    for (let py = 0; py < 2; py++) {
      for (let px = 0; px < 2; px++) {
        const base = (i * 4 + 2 * py + px) * w2 * h2;
        for (let y = py, yy = 0; y < h; y += 2, yy++) {
          for (let x = px, xx = 0; x < w; x += 2, xx++) out[base + yy * w2 + xx] = p[y * w + x]!;
        }
      }
    }
  });
  return { data: out, w: w2, h: h2, channels: 4 };
}

/**
 * {@link kneeScoreMap} with the correlation in onnxruntime (one intra-op thread: the worker runs
 * several jobs at once and the ensemble has its own threads). At stride 2 the image and templates
 * are split into polyphase components: the same numerator at every other position for a quarter
 * of the work. Results equal the JavaScript reference to float32 rounding (tested).
 */
export class OnnxCorrelator {
  private session: Promise<ort.InferenceSession> | undefined;
  private readonly packed = new Map<string, ort.Tensor>();
  private readonly ids = new WeakMap<KneeTemplate, number>();

  private open(): Promise<ort.InferenceSession> {
    this.session ??= ort.InferenceSession.create(NCC_GRAPH.pathname, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionMode: "sequential",
      graphOptimizationLevel: "all",
    });
    return this.session;
  }

  private templates(t: KneeTemplate, stride: 1 | 2): ort.Tensor {
    let id = this.ids.get(t);
    if (id === undefined) {
      id = this.packed.size;
      this.ids.set(t, id);
    }
    const key = `${id}/${stride}`;
    let tensor = this.packed.get(key);
    if (!tensor) {
      const { data, w, channels } = polyphase([t.mean, t.vgrad, t.hgrad], t.size, t.size, stride);
      tensor = new ort.Tensor("float32", data, [3, channels, w, w]);
      this.packed.set(key, tensor);
    }
    return tensor;
  }

  /** Same contract as {@link kneeScoreMap}. */
  async scoreMap(
    image: Float32Array,
    width: number,
    height: number,
    t: KneeTemplate,
    requestedStride: 1 | 2 = 1,
  ): Promise<ScoreMap> {
    const n = t.size;
    // Polyphase needs an even template; an odd one is correlated at every position.
    const stride: 1 | 2 = n % 2 === 0 ? requestedStride : 1;
    const mw = Math.max(0, width - n + 1);
    const mh = Math.max(0, height - n + 1);
    const map = new Float32Array(mw * mh).fill(-1);
    if (mw === 0 || mh === 0) return { map, width: mw, height: mh };
    const session = await this.open();
    const fs = features(image, width, height);
    // Each feature without its mean: the templates are zero-mean, so the numerator is unchanged,
    // and float32 accumulation loses less to large offsets.
    const centred = fs.map((f) => {
      let mean = 0;
      for (let i = 0; i < f.length; i++) mean += f[i]!;
      mean /= f.length;
      const c = new Float32Array(f.length);
      for (let i = 0; i < f.length; i++) c[i] = f[i]! - mean;
      return c;
    });
    const split = polyphase(centred, width, height, stride);
    const out = await session.run({
      image: new ort.Tensor("float32", split.data, [1, 3 * split.channels, split.h, split.w]),
      templates: this.templates(t, stride),
    });
    const corr = out.corr!.data as Float32Array;
    const cw = out.corr!.dims[3]!;
    const plane = out.corr!.dims[2]! * cw;
    const norms = fs.map((f) => windowNorms(f, width, height, n, stride));
    for (let y = 0; y < mh; y += stride) {
      for (let x = 0; x < mw; x += stride) {
        // Output (y / stride, x / stride) is the window at (y, x).
        const at = (y / stride) * cw + x / stride;
        let total = 0;
        for (let c = 0; c < 3; c++) {
          const norm = norms[c]![y * mw + x]!;
          total += norm === 0 ? -1 : corr[c * plane + at]! / norm;
        }
        map[y * mw + x] = total / 3;
      }
    }
    return { map, width: mw, height: mh };
  }
}
