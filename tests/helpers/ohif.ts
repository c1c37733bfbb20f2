/**
 * OHIF, the open-source web viewer, as radiologists run it beside a PACS: the prebuilt viewer of
 * the npm package `@ohif/app` (its `dist/`), served as static files with the DICOMweb endpoints of
 * a real Orthanc proxied under the same origin (Orthanc sends no CORS headers).
 *
 * The package is fetched with npm's own client (`npm pack`, which checks the registry's integrity)
 * into var/ohif/ once, and its tarball checked against the pinned sha512 below. It is not a
 * dependency in package.json: `@ohif/app` 3.13.2 depends on `@ohif/i18n` 3.13.2, which the
 * registry does not have, so `npm install` cannot resolve it; and the viewer needs none of its
 * dependencies, its `dist/` is self-contained.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, stat } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { extname, join, normalize, sep } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "@kneegrade/sample-radiographs";
import { freePort } from "./cli.ts";

const run = promisify(execFile);

export const OHIF_VERSION = "3.13.2";
const OHIF_INTEGRITY =
  "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA==";

/** Where the viewer's files are kept between runs. */
export const OHIF_DIR = join(REPO_ROOT, "var", "ohif", OHIF_VERSION);

/**
 * The viewer's `dist/` folder: fetched and unpacked when missing. Throws with the reason when it
 * cannot be had (no registry, no tar).
 */
export async function ohifDist(): Promise<string> {
  const dist = join(OHIF_DIR, "package", "dist");
  if (existsSync(join(dist, "index.html"))) return dist;
  const work = await mkdtemp(join(tmpdir(), "kneegrade-ohif-"));
  try {
    const { stdout } = await run(
      "npm",
      ["pack", `@ohif/app@${OHIF_VERSION}`, "--pack-destination", work, "--json"],
      { cwd: work, timeout: 600_000, maxBuffer: 64 * 1024 * 1024 },
    );
    const [packed] = JSON.parse(stdout) as { filename: string }[];
    if (!packed) throw new Error("npm pack named no file");
    const tarball = join(work, packed.filename.replace(/^@ohif\//, "ohif-"));
    const digest = createHash("sha512")
      .update(await readFile(tarball))
      .digest("base64");
    if (`sha512-${digest}` !== OHIF_INTEGRITY) {
      throw new Error(`@ohif/app ${OHIF_VERSION}: the tarball's sha512 is not the pinned one`);
    }
    const unpacked = join(work, "unpacked");
    await mkdir(unpacked);
    await run("tar", ["-xzf", tarball, "-C", unpacked], { timeout: 300_000 });
    await mkdir(join(OHIF_DIR, ".."), { recursive: true });
    await rm(OHIF_DIR, { recursive: true, force: true });
    await rename(unpacked, OHIF_DIR);
    return dist;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The viewer's configuration: one DICOMweb data source, the proxied Orthanc on this origin. WADO-RS
 * for images and thumbnails (Orthanc's DICOMweb plugin serves both).
 */
export function ohifConfig(): string {
  return `window.config = {
  routerBasename: null,
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 1,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: { option: "never" },
  defaultDataSourceName: "orthanc",
  dataSources: [
    {
      namespace: "@ohif/extension-default.dataSourcesModule.dicomweb",
      sourceName: "orthanc",
      configuration: {
        friendlyName: "Orthanc (kneegrade viewer test)",
        name: "orthanc",
        qidoRoot: location.origin + "/dicom-web",
        wadoRoot: location.origin + "/dicom-web",
        wadoUriRoot: location.origin + "/wado",
        qidoSupportsIncludeField: false,
        imageRendering: "wadors",
        thumbnailRendering: "wadors",
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true },
      },
    },
  ],
};
`;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
};

export interface RunningOhif {
  url: string;
  stop(): Promise<void>;
}

/**
 * Serves `dist` on a loopback port: `/app-config.js` from {@link ohifConfig}, `/dicom-web/…` and
 * `/wado…` proxied to Orthanc, every other path a file of `dist` or, for the viewer's own routes
 * (`/viewer?…`), its index.html.
 */
export async function startOhif(dist: string, orthancHttpUrl: string): Promise<RunningOhif> {
  const orthanc = new URL(orthancHttpUrl);
  const root = normalize(dist + sep);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://viewer");
    if (url.pathname.startsWith("/dicom-web/") || url.pathname.startsWith("/wado")) {
      const upstream = http.request(
        {
          host: orthanc.hostname,
          port: orthanc.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: orthanc.host },
        },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on("error", () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      req.pipe(upstream);
      return;
    }
    if (url.pathname === "/app-config.js") {
      res.writeHead(200, { "content-type": TYPES[".js"]!, "cache-control": "no-store" });
      res.end(ohifConfig());
      return;
    }
    void (async () => {
      let file = normalize(join(root, decodeURIComponent(url.pathname)));
      if (!file.startsWith(root)) {
        res.writeHead(403).end();
        return;
      }
      const found = await stat(file).catch(() => null);
      if (!found?.isFile()) file = join(root, "index.html");
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
      createReadStream(file).pipe(res);
    })();
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
