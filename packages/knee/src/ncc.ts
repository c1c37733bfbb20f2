/**
 * Normalised cross-correlation (NCC) of the knee templates with an image, on three features:
 * intensity, vertical-gradient magnitude and horizontal-gradient magnitude (see localise.ts).
 *
 * Two implementations of the same arithmetic:
 * - {@link kneeScoreMap}: plain JavaScript, for single patches (refinement's last step, per-grade
 *   scoring) and as the reference the other is tested against;
 * - {@link OnnxCorrelator}: the O(H·W·n²) numerator in an ONNX graph, a row-by-row matrix product
 *   (assets/knee-ncc-s1.onnx and -s2.onnx, built by `python3 -m models.knee_ncc`; the templates
 *   are an input, so the graphs hold no weights and any template set runs on them)
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

/**
 * Integral images of an image (the `width`×`height` plane from `offset`) and of its square
 * (float64: no cancellation in the variance), into `into` when it is large enough.
 */
function integrals(
  image: Float32Array,
  width: number,
  height: number,
  offset = 0,
  into?: { sum: Float64Array; sq: Float64Array },
) {
  const iw = width + 1;
  const size = iw * (height + 1);
  const fits = into && into.sum.length >= size;
  const sum = fits ? into.sum : new Float64Array(size);
  const sq = fits ? into.sq : new Float64Array(size);
  if (fits) {
    sum.fill(0, 0, iw);
    sq.fill(0, 0, iw);
  }
  for (let y = 0; y < height; y++) {
    let rs = 0;
    let rq = 0;
    const row = (y + 1) * iw;
    sum[row] = 0;
    sq[row] = 0;
    for (let x = 0; x < width; x++) {
      const v = image[offset + y * width + x]!;
      rs += v;
      rq += v * v;
      sum[row + x + 1] = sum[row - iw + x + 1]! + rs;
      sq[row + x + 1] = sq[row - iw + x + 1]! + rq;
    }
  }
  return { sum, sq, iw };
}

/** The norm of the n×n window at `a` (its top-left corner's index in the integral images). */
function windowNorm(sum: Float64Array, sq: Float64Array, iw: number, a: number, n: number) {
  const b = a + n;
  const c = a + n * iw;
  const d = c + n;
  const area = n * n;
  const s = sum[d]! - sum[b]! - sum[c]! + sum[a]!;
  const q = sq[d]! - sq[b]! - sq[c]! + sq[a]!;
  const variance = q - (s * s) / area;
  return variance <= 1e-6 * area ? 0 : Math.sqrt(variance);
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
  for (let y = 0; y < mh; y += stride) {
    for (let x = 0; x < mw; x += stride) out[y * mw + x] = windowNorm(sum, sq, iw, y * iw + x, n);
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
export function verticalGradient(
  image: Float32Array,
  width: number,
  height: number,
  g = new Float32Array(width * height),
): Float32Array {
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
  g = new Float32Array(width * height),
): Float32Array {
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

/** The integral images' buffers, grown as needed (see {@link OnnxCorrelator.scoreMap}). */
let scratch = { sum: new Float64Array(0), sq: new Float64Array(0) };

/** The correlation graphs (`python3 -m models.knee_ncc`): every position, and every other x. */
const NCC_GRAPHS = {
  1: new URL("../assets/knee-ncc-s1.onnx", import.meta.url),
  2: new URL("../assets/knee-ncc-s2.onnx", import.meta.url),
} as const;

/**
 * {@link kneeScoreMap} with the correlation in onnxruntime (one intra-op thread: the worker runs
 * several jobs at once and the ensemble has its own threads). The graph correlates each image row
 * with each template row as one matrix product and sums the diagonals (models/knee_ncc.py); at
 * stride 2 it computes every other position only (every other x in the convolution, every other
 * y from the even and odd rows). Results equal the JavaScript reference to float32 rounding
 * (tested).
 */
export class OnnxCorrelator {
  private readonly sessions = new Map<1 | 2, Promise<ort.InferenceSession>>();
  private readonly packed = new WeakMap<KneeTemplate, ort.Tensor>();

  private open(stride: 1 | 2): Promise<ort.InferenceSession> {
    let session = this.sessions.get(stride);
    if (!session) {
      session = ort.InferenceSession.create(NCC_GRAPHS[stride].pathname, {
        intraOpNumThreads: 1,
        interOpNumThreads: 1,
        executionMode: "sequential",
        graphOptimizationLevel: "all",
      });
      this.sessions.set(stride, session);
    }
    return session;
  }

  /** The template triple as the graph's `templates` input, [3, 1, n, n]. */
  private templates(t: KneeTemplate): ort.Tensor {
    let tensor = this.packed.get(t);
    if (!tensor) {
      const n2 = t.size * t.size;
      const data = new Float32Array(3 * n2);
      data.set(t.mean, 0);
      data.set(t.vgrad, n2);
      data.set(t.hgrad, 2 * n2);
      tensor = new ort.Tensor("float32", data, [3, 1, t.size, t.size]);
      this.packed.set(t, tensor);
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
    // The stride-2 graph splits the template's rows into even and odd: an odd template is
    // correlated at every position.
    const stride: 1 | 2 = n % 2 === 0 ? requestedStride : 1;
    const mw = Math.max(0, width - n + 1);
    const mh = Math.max(0, height - n + 1);
    const map = new Float32Array(mw * mh).fill(-1);
    if (mw === 0 || mh === 0) return { map, width: mw, height: mh };
    const session = await this.open(stride);
    // The three features one after another, each without its mean: the templates are zero-mean,
    // so the numerator is unchanged, and float32 accumulation loses less to large offsets (the
    // window norms do not change either).
    const plane = width * height;
    const centred = new Float32Array(3 * plane);
    centred.set(image.subarray(0, plane));
    verticalGradient(image, width, height, centred.subarray(plane, 2 * plane));
    horizontalGradient(image, width, height, centred.subarray(2 * plane));
    for (let c = 0; c < 3; c++) {
      const f = centred.subarray(c * plane, (c + 1) * plane);
      let mean = 0;
      for (let i = 0; i < plane; i++) mean += f[i]!;
      mean /= plane;
      for (let i = 0; i < plane; i++) f[i] = f[i]! - mean;
    }
    const out = await session.run({
      image: new ort.Tensor("float32", centred, [1, 3, height, width]),
      templates: this.templates(t),
    });
    const corr = out.corr!.data as Float32Array;
    const cw = out.corr!.dims[3]!;
    const cplane = out.corr!.dims[2]! * cw;
    // Each feature's NCC, summed into the map (one synchronous stretch: the integral images can
    // live in buffers shared by every call).
    const size = (width + 1) * (height + 1);
    if (scratch.sum.length < size) {
      scratch = { sum: new Float64Array(size), sq: new Float64Array(size) };
    }
    for (let c = 0; c < 3; c++) {
      const { sum, sq, iw } = integrals(centred, width, height, c * plane, scratch);
      for (let y = 0; y < mh; y += stride) {
        for (let x = 0; x < mw; x += stride) {
          // Output (y / stride, x / stride) is the window at (y, x).
          const norm = windowNorm(sum, sq, iw, y * iw + x, n);
          const v = norm === 0 ? -1 : corr[c * cplane + (y / stride) * cw + x / stride]! / norm;
          map[y * mw + x] = c === 0 ? v : map[y * mw + x]! + v;
        }
      }
    }
    for (let y = 0; y < mh; y += stride) {
      for (let x = 0; x < mw; x += stride) map[y * mw + x] = map[y * mw + x]! / 3;
    }
    return { map, width: mw, height: mh };
  }
}
