# One image for the four kneegrade services (listener, worker, reporter, review) and the one-shot
# migration; the command chooses (`serve --only worker`, `prisma migrate deploy`, ...). See
# docs/DEPLOYMENT.md.
#
# Stage `build` compiles the TypeScript (tsconfig.build.json) and assembles the production tree
# (infra/docker/runtime-tree.mjs) with production dependencies only; the runtime stage holds that
# tree, runs as the unprivileged user `kneegrade` and starts the services with `node` (no tsx).
#
# Base images: BUILD_IMAGE (Node 20 with npm) and RUNTIME_IMAGE (Node 20). A site with a registry
# uses the defaults; without one, infra/docker/base-images.sh builds Debian-based stand-ins
# (kneegrade-local/node-build:20, kneegrade-local/node:20) and infra/docker/compose.sh passes them.
#
# The GPU worker for CUDA 12 hosts is Dockerfile.gpu (docker-compose.gpu.yml): this image's /app on
# an NVIDIA CUDA 12 + cuDNN 9 runtime base.
ARG BUILD_IMAGE=node:20-bookworm-slim
ARG RUNTIME_IMAGE=node:20-bookworm-slim

FROM ${BUILD_IMAGE} AS build

WORKDIR /src
COPY package.json package-lock.json .npmrc tsconfig.json tsconfig.build.json prisma.config.ts ./
COPY types/ types/
COPY prisma/ prisma/
COPY packages/ packages/
COPY services/ services/
COPY infra/docker/runtime-tree.mjs infra/docker/
# Site CA certificates for a TLS-inspecting proxy (infra/docker/ca-certificates/README.md); build only.
COPY infra/docker/ca-certificates/ /tmp/ca-certificates/

# - --ignore-scripts: package.json's `allowScripts` map (every dependency script off) is read by
#   npm 11 only; older npm would run them all. Ignoring scripts gives the same result on any npm;
#   `prisma generate` (the root postinstall) is run explicitly.
# - .npmrc's onnxruntime-node-install=skip keeps the CPU (and WebGPU) providers bundled in the
#   package (Dockerfile.gpu adds CUDA's). Other platforms' binaries are removed.
RUN if ls /tmp/ca-certificates/*.crt >/dev/null 2>&1; then \
       cat /tmp/ca-certificates/*.crt > /tmp/extra-ca.pem && export NODE_EXTRA_CA_CERTS=/tmp/extra-ca.pem; \
     fi \
  && npm ci --include=dev --ignore-scripts \
  && npx prisma generate \
  && npm run build \
  && node infra/docker/runtime-tree.mjs /out \
  && cd /out \
  && npm ci --omit=dev --ignore-scripts \
  && arch="$(node -p process.arch)" \
  && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 -type d \
       ! -path "*/linux/$arch" -exec rm -rf {} + \
  && npm cache clean --force

FROM ${RUNTIME_IMAGE} AS app
# Spool and model locations inside the container; compose mounts a named volume on the spool (its
# ownership is copied from here on first use) and the model directory read-only.
RUN groupadd --system --gid 10001 kneegrade \
  && useradd --system --uid 10001 --gid kneegrade --home-dir /var/lib/kneegrade --no-create-home \
       --shell /usr/sbin/nologin kneegrade \
  && mkdir -p /var/lib/kneegrade/spool /opt/kneegrade/models \
  && chown -R kneegrade:kneegrade /var/lib/kneegrade
WORKDIR /app
COPY --from=build /out/ ./
ENV NODE_ENV=production \
    PATH=/app/node_modules/.bin:$PATH \
    SPOOL_DIR=/var/lib/kneegrade/spool \
    MODEL_DIR=/opt/kneegrade/models \
    METRICS_PORT=9464
USER kneegrade
EXPOSE 11112 8484
# Liveness of a service: its ops server answers /healthz (compose adds readiness checks per service).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.METRICS_PORT||9464)+'/healthz').then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "/app/packages/cli/bin/kneegrade.js"]
CMD ["serve"]
