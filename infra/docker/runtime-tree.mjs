// Assembles the production tree of the kneegrade image from the sources and the compiled JavaScript
// (`tsc -p tsconfig.build.json` → build/): for every workspace its package.json with the exports
// pointing at .js, the compiled src/*.js, the plain-JS worker files (*.mjs), and its assets, public
// files and bin; the root package.json, package-lock.json and .npmrc (for `npm ci --omit=dev`),
// and prisma/ with prisma.config.ts (for `prisma migrate deploy`). No tests, no TypeScript sources.
//
//   node infra/docker/runtime-tree.mjs <out-dir>      (run in the repository root, after the build)
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";

const out = process.argv[2];
if (!out) {
  console.error("usage: node infra/docker/runtime-tree.mjs <out-dir>");
  process.exit(2);
}
const BUILD = "build";
if (!existsSync(join(BUILD, "packages/cli/src/main.js"))) {
  console.error(
    `runtime-tree: ${BUILD}/packages/cli/src/main.js is missing: run \`npm run build\` first`,
  );
  process.exit(1);
}

const copy = (from, to = from) => {
  mkdirSync(dirname(join(out, to)), { recursive: true });
  cpSync(from, join(out, to), { recursive: true });
};

/** Every file under dir (recursively), relative to dir. */
const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath ?? e.path, e.name)));

/** `./src/x.ts` → `./src/x.js` in exports, main and bin (strings or nested condition maps). */
const toJs = (value) =>
  typeof value === "string"
    ? value.replace(/\.ts$/, ".js")
    : value && typeof value === "object"
      ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJs(v)]))
      : value;

for (const file of ["package.json", "package-lock.json", ".npmrc", "prisma.config.ts"]) copy(file);
copy("prisma");

const workspaces = ["packages", "services"].flatMap((top) =>
  readdirSync(top)
    .map((name) => join(top, name))
    .filter((dir) => existsSync(join(dir, "package.json"))),
);
for (const ws of workspaces) {
  const pkg = JSON.parse(readFileSync(join(ws, "package.json"), "utf8"));
  for (const key of ["exports", "main", "bin"])
    if (pkg[key] !== undefined) pkg[key] = toJs(pkg[key]);
  mkdirSync(join(out, ws), { recursive: true });
  writeFileSync(join(out, ws, "package.json"), `${JSON.stringify(pkg, null, 2)}\n`);
  for (const file of walk(join(BUILD, ws, "src")))
    copy(join(BUILD, ws, "src", file), join(ws, "src", file));
  // Plain JavaScript beside the sources (worker-thread entry points), never tests or TypeScript.
  for (const file of walk(join(ws, "src"))) {
    if (/\.(m?js|cjs|json)$/.test(file) && !/\.test\./.test(file)) copy(join(ws, "src", file));
  }
  for (const extra of ["assets", "public", "bin"]) {
    if (existsSync(join(ws, extra)) && statSync(join(ws, extra)).isDirectory())
      copy(join(ws, extra));
  }
}
console.log(`runtime-tree: ${workspaces.length} workspaces → ${out}`);
