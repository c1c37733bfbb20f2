/**
 * The digest recorded for each received instance (`Instance.digest`): `blake3:<64 hex digits>` over
 * the Part 10 file as spooled. BLAKE3 rather than SHA-256 because the listener hashes every byte
 * it receives on the peer's time, and BLAKE3 costs a third of SHA-256's CPU (with the SHA
 * instructions) for the same collision resistance. Rows recorded before it hold `sha256:<hex>`.
 */
import { createHash } from "node:crypto";
import { Blake3Hasher } from "@napi-rs/blake-hash";

export const DIGEST_PREFIX = "blake3:";
export const LEGACY_DIGEST_PREFIX = "sha256:";

export interface InstanceDigest {
  update(bytes: Uint8Array): void;
  /** The digest as recorded; call once. */
  digest(): string;
}

export function createInstanceDigest(): InstanceDigest {
  const hasher = new Blake3Hasher();
  return {
    update: (bytes) => {
      hasher.update(
        Buffer.isBuffer(bytes)
          ? bytes
          : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      );
    },
    digest: () => DIGEST_PREFIX + hasher.digest("hex"),
  };
}

/** The digest of a whole object, as the listener records it. */
export function instanceDigest(bytes: Uint8Array): string {
  const d = createInstanceDigest();
  d.update(bytes);
  return d.digest();
}

/** The digest a version before BLAKE3 recorded for the same bytes. */
export function legacyInstanceDigest(bytes: Uint8Array): string {
  return LEGACY_DIGEST_PREFIX + createHash("sha256").update(bytes).digest("hex");
}
