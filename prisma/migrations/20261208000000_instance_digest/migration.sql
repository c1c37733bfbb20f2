-- Each instance digest names its algorithm. Objects received from now on are hashed with BLAKE3,
-- a third of the CPU of SHA-256 per object, and the digests already recorded stay valid as SHA-256.
ALTER TABLE "Instance" RENAME COLUMN "sha256" TO "digest";
UPDATE "Instance" SET "digest" = 'sha256:' || "digest";
