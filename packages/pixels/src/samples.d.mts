/** Types of samples.mjs (plain JavaScript, shared with the codec worker). */

/** out[i] = (words[i] >>> shift) & mask. */
export function maskWords(words: Uint16Array, out: Int32Array, shift: number, mask: number): void;

/** What storedFromDecoded needs of the Image Pixel module. */
export interface SampleLayout {
  rows: number;
  columns: number;
  bitsStored: number;
  pixelRepresentation: 0 | 1;
}

/** Stored values at the decoder's sample width, signed when Pixel Representation is 1. */
export type CompactStored = Uint8Array | Int8Array | Uint16Array | Int16Array;

/**
 * Stored values from a decoder's output (little endian, 1 or 2 bytes per sample): masked and
 * sign-extended when lossless, clamped to the stored range when lossy; in place when `owned`,
 * else on a copy. `sampleBits`: an upper bound on the bits of every sample, when the decoder
 * reports one. Throws an Error when the output is neither 1 nor 2 bytes per pixel.
 */
export function storedFromDecoded(
  decoded: Uint8Array,
  m: SampleLayout,
  lossy: boolean,
  options?: { owned?: boolean; sampleBits?: number },
): CompactStored;
