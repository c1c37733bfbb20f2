/**
 * `npm run lint`'s file-length check: no source or test file under services/ or packages/ longer
 * than MAX_FILE_LINES, counted as `wc -l` counts them (comments and blank lines included). Biome's
 * noExcessiveLinesPerFile leaves a file's leading comment out of its count, so it cannot hold this
 * limit on its own; function length is Biome's rule (biome.json).
 *
 * Usage: `tsx infra/file-lines.ts [DIR...]` (default: services packages). Exit status 1 and one
 * line per file over the limit when there is one.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const MAX_FILE_LINES = 520;

/** What counts as source: code and style sheets, not data (JSON), docs or models. */
const SOURCE = /\.(ts|mts|cts|js|mjs|cjs|css)$/;
/** Installed, generated or built trees: not written here. */
const SKIPPED = /(^|\/)(node_modules|generated|dist|build)(\/|$)/;

/** Lines as `wc -l` counts them: newline characters, plus a last line without one. */
export function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) n++;
  return text.length > 0 && !text.endsWith("\n") ? n + 1 : n;
}

/** Every source file under `roots` longer than `max` lines, longest first. */
export function longFiles(
  roots: readonly string[],
  max = MAX_FILE_LINES,
): { path: string; lines: number }[] {
  const found: { path: string; lines: number }[] = [];
  for (const root of roots) {
    for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !SOURCE.test(entry.name)) continue;
      const path = join(entry.parentPath, entry.name);
      if (SKIPPED.test(path)) continue;
      const lines = countLines(readFileSync(path, "utf8"));
      if (lines > max) found.push({ path, lines });
    }
  }
  return found.sort((a, b) => b.lines - a.lines);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const roots = process.argv.length > 2 ? process.argv.slice(2) : ["services", "packages"];
  const over = longFiles(roots);
  for (const { path, lines } of over) {
    console.error(`${path}: ${lines} lines (at most ${MAX_FILE_LINES}): split it by concern`);
  }
  if (over.length > 0) process.exit(1);
}
