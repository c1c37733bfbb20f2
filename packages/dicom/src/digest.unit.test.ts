import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createInstanceDigest, instanceDigest, legacyInstanceDigest } from "./digest.ts";

/** The BLAKE3 reference test vectors: input byte i is i mod 251 (BLAKE3 repository, test_vectors.json). */
const vectorInput = (n: number) => Uint8Array.from({ length: n }, (_, i) => i % 251);

describe("instanceDigest", () => {
  it("is BLAKE3 as its reference vectors give it", () => {
    expect(instanceDigest(vectorInput(0))).toBe(
      "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    );
    expect(instanceDigest(vectorInput(1))).toBe(
      "blake3:2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    );
    expect(instanceDigest(vectorInput(1024))).toBe(
      "blake3:42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
    );
  });

  it("is the same whether the bytes come whole or in pieces of any size", () => {
    const bytes = vectorInput(3 * 1024 * 1024 + 17);
    const pieces = createInstanceDigest();
    for (let at = 0; at < bytes.length; at += 65_537)
      pieces.update(bytes.subarray(at, at + 65_537));
    expect(pieces.digest()).toBe(instanceDigest(bytes));
  });

  it("names SHA-256 for the digests that versions before BLAKE3 recorded", () => {
    const bytes = vectorInput(100);
    expect(legacyInstanceDigest(bytes)).toBe(
      `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
    );
  });
});
