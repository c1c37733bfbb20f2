/** Test-only helpers for this package's tests (not exported from the package). */
import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger, type Logger } from "@kneegrade/log";
import { type TestModelName, testModel } from "@kneegrade/test-models";
import { Ensemble, type EnsembleOptions } from "./runtime.ts";

/** Deterministic synthetic 8-bit grey crops (smooth bands plus noise): no patient data. */
export function syntheticCrops(
  count: number,
  height: number,
  width: number,
  seed = 1,
): Uint8Array[] {
  let state = seed >>> 0 || 1;
  const rand = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  return Array.from({ length: count }, (_, n) => {
    const crop = new Uint8Array(height * width);
    const fy = 1 + (n % 3);
    const fx = 1 + ((n * 7) % 4);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const v =
          0.5 +
          0.3 *
            Math.sin(2 * Math.PI * ((y / height) * fy + 0.3 * (x / width))) *
            Math.cos(2 * Math.PI * (x / width) * fx);
        crop[y * width + x] = Math.max(0, Math.min(255, Math.round(v * 255 + (rand() - 0.5) * 60)));
      }
    }
    return crop;
  });
}

/** A pino logger whose JSON lines land in `lines`. */
export function captureLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger("inference-test", "debug", {
    write: (line: string) => {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  return { logger, lines };
}

/** A writable copy of a model folder, with its manifest passed through `edit`. */
export async function copyModel(
  dir: string,
  edit: (manifest: Record<string, unknown>) => void = () => {},
): Promise<string> {
  const copy = await mkdtemp(join(tmpdir(), "kneegrade-inference-"));
  await cp(dir, copy, { recursive: true });
  const path = join(copy, "manifest.json");
  const manifest = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
  edit(manifest);
  await writeFile(path, JSON.stringify(manifest, null, 2));
  return copy;
}

/** `manifest.members` of a parsed manifest, typed loosely for edits. */
export function membersOf(manifest: Record<string, unknown>): Record<string, unknown>[] {
  return manifest.members as Record<string, unknown>[];
}

/**
 * A test model (built by models/ once, then cached) opened for a test file: one intra-op thread,
 * so that test files running side by side do not compete for cores; its log kept out of the output.
 */
export async function openTestModel(
  name: TestModelName,
  options: Omit<EnsembleOptions, "modelDir" | "allowTestModel"> = {},
): Promise<Ensemble> {
  return Ensemble.open({
    modelDir: await testModel(name),
    allowTestModel: true,
    intraOpThreads: 1,
    logger: captureLogger().logger,
    ...options,
  });
}
