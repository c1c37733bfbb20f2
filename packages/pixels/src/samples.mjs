// Decoder output -> stored values, in the codec worker (codec-worker.mjs): converted where they are
// decoded, in place and at the decoder's sample width (16 bits for RG3, not a 32-bit array), so
// that no further copy of the frame is made or touched on its way to the caller.
// Plain JavaScript for the same reason as the worker; types in samples.d.mts.

/** out[i] = (words[i] >>> shift) & mask, as one tight loop (no call per pixel). */
export function maskWords(words, out, shift, mask) {
  const n = out.length;
  for (let i = 0; i < n; i++) out[i] = (words[i] >>> shift) & mask;
}

/** A typed view of `bytes` (1 or 2 bytes per sample, little endian) with the stored values' sign. */
function viewOf(bytes, n, bytesPerSample, signed) {
  if (bytesPerSample === 1) {
    return signed ? new Int8Array(bytes.buffer, bytes.byteOffset, n) : bytes;
  }
  return signed
    ? new Int16Array(bytes.buffer, bytes.byteOffset, n)
    : new Uint16Array(bytes.buffer, bytes.byteOffset, n);
}

/** The range of stored values that bitsStored and pixelRepresentation allow. */
function storedRange(m) {
  return m.pixelRepresentation === 1
    ? { min: -(2 ** (m.bitsStored - 1)), max: 2 ** (m.bitsStored - 1) - 1 }
    : { min: 0, max: 2 ** m.bitsStored - 1 };
}

/** The Bits Stored bits of each sample of `out` (a signed view), sign-extended in place. */
function signExtend(out, bitsStored) {
  const raw =
    out.BYTES_PER_ELEMENT === 1
      ? new Uint8Array(out.buffer, out.byteOffset, out.length)
      : new Uint16Array(out.buffer, out.byteOffset, out.length);
  const mask = 2 ** bitsStored - 1;
  const signBit = 2 ** (bitsStored - 1);
  const modulus = 2 ** bitsStored;
  const n = out.length;
  for (let i = 0; i < n; i++) {
    const v = raw[i] & mask;
    out[i] = v >= signBit ? v - modulus : v;
  }
}

// Both look before they write: reading a frame costs a fraction of rewriting it, and well-formed
// lossless data has nothing above Bits Stored (lossy data overshoots in a few samples at most).

function maskInPlace(samples, mask) {
  const n = samples.length;
  let bits = 0;
  for (let i = 0; i < n; i++) bits |= samples[i];
  if ((bits & ~mask) === 0) return;
  for (let i = 0; i < n; i++) samples[i] &= mask;
}

function clampInPlace(samples, min, max) {
  const n = samples.length;
  let lo = min;
  let hi = max;
  for (let i = 0; i < n; i++) {
    const v = samples[i];
    if (v < lo) lo = v;
    else if (v > hi) hi = v;
  }
  if (lo === min && hi === max) return;
  for (let i = 0; i < n; i++) {
    const v = samples[i];
    if (v < min) samples[i] = min;
    else if (v > max) samples[i] = max;
  }
}

/**
 * Stored values from a decoder's output (little endian, 1 or 2 bytes per sample), at the output's
 * width: Uint8Array / Uint16Array, or Int8Array / Int16Array when Pixel Representation is 1.
 * Lossless codecs reproduce the encoded bits, so they are masked and sign-extended like native data.
 * Lossy codecs work at their own precision (e.g. 12-bit JPEG for a 10-bit image) and may overshoot
 * the stored range at sharp edges; masking would wrap such a sample (1024 -> 0 in 10 bits), so it
 * is clamped to the range instead.
 * `owned`: the output is the caller's to change (it is then converted in place, without a copy);
 * otherwise (e.g. a view of a WebAssembly memory) it is copied first. The result owns its whole
 * ArrayBuffer, ready to be transferred.
 * `sampleBits`, when the decoder tells it, bounds every sample below 2^sampleBits (CharLS: the
 * stream's bits per sample); unsigned samples that fit Bits Stored then need neither masking nor
 * clamping.
 */
export function storedFromDecoded(decoded, m, lossy, { owned = false, sampleBits } = {}) {
  const n = m.rows * m.columns;
  const bytesPerSample = decoded.byteLength / n;
  if (bytesPerSample !== 1 && bytesPerSample !== 2) {
    throw new Error(
      `the decoder returned ${decoded.byteLength} bytes for a ${m.columns}x${m.rows} frame ` +
        `(expected ${n} or ${2 * n})`,
    );
  }
  const whole =
    owned &&
    decoded.byteOffset === 0 &&
    decoded.byteLength === decoded.buffer.byteLength &&
    decoded.buffer instanceof ArrayBuffer;
  const bytes = whole ? decoded : decoded.slice(); // slice: a copy with its own, aligned buffer
  const signed = m.pixelRepresentation === 1;
  const out = viewOf(bytes, n, bytesPerSample, signed);
  const fits = !signed && sampleBits !== undefined && sampleBits <= m.bitsStored;
  // Every sample is then a stored value: nothing to mask, overshoot impossible.
  if (fits || m.bitsStored === 8 * bytesPerSample) return out;
  if (!lossy) {
    if (signed) signExtend(out, m.bitsStored);
    else maskInPlace(out, 2 ** m.bitsStored - 1);
    return out;
  }
  const { min, max } = storedRange(m);
  clampInPlace(out, min, max);
  return out;
}
