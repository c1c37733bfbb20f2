/** `npm run lint`'s file-length check (infra/file-lines.ts) counts as `wc -l` and skips what is not source. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { countLines, longFiles } from "../infra/file-lines.ts";

const dir = mkdtempSync(join(tmpdir(), "kneegrade-file-lines-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const lines = (n: number, first = "") =>
  [first, ...Array.from({ length: n - 1 }, (_, i) => `export const a${i} = ${i};`)].join("\n");

it("counts lines as wc -l does", () => {
  expect(countLines("")).toBe(0);
  expect(countLines("a\n")).toBe(1);
  expect(countLines("a\nb")).toBe(2);
  expect(countLines("a\n\n\nb\n")).toBe(4);
});

it("reports source files over the limit, leading comments and blank lines included", () => {
  const src = join(dir, "pkg", "src");
  mkdirSync(join(src, "deep"), { recursive: true });
  mkdirSync(join(dir, "pkg", "node_modules", "dep"), { recursive: true });
  // 521 lines, 20 of them the file's leading comment (which Biome's own rule does not count).
  writeFileSync(join(src, "deep", "long.ts"), `/**\n${" * why\n".repeat(18)} */\n${lines(501)}\n`);
  writeFileSync(join(src, "limit.ts"), `${lines(520)}\n`);
  writeFileSync(join(src, "style.css"), `${"a { color: red; }\n".repeat(530)}`);
  writeFileSync(join(src, "data.json"), `${"1\n".repeat(900)}`);
  writeFileSync(join(dir, "pkg", "node_modules", "dep", "index.js"), `${lines(900)}\n`);

  const found = longFiles([join(dir, "pkg")], 520);
  expect(found).toEqual([
    { path: join(src, "style.css"), lines: 530 },
    { path: join(src, "deep", "long.ts"), lines: 521 },
  ]);
  expect(longFiles([join(dir, "pkg")], 530)).toEqual([]);
});
