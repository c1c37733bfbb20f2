# One image for the four kneegrade services (listener, worker, reporter, review) and the one-shot
# migration; docker-compose.yml picks the service with `serve --only ...`. See docs/DEPLOYMENT.md.
# Target `gpu` (docker-compose.gpu.yml) is the worker for CUDA 12 hosts: the same /app on an
# NVIDIA CUDA 12 + cuDNN 9 runtime base, with onnxruntime-node's CUDA provider (build with network
# access) and the Vulkan loader for the bundled WebGPU provider.
FROM node:20-bookworm-slim AS app

# 1 downloads onnxruntime-node's CUDA 12 execution provider from NuGet at build time (needs network
# access then). The CUDA runtime and cuDNN libraries it loads are NOT in this base image: see
# docs/DEPLOYMENT.md ("GPU hosts").
ARG ORT_CUDA=0

WORKDIR /app

COPY package.json package-lock.json .npmrc tsconfig.json prisma.config.ts ./
COPY prisma/ prisma/
COPY packages/ packages/
COPY services/ services/

# - --include=dev: the CLI runs its TypeScript through tsx and the migrate service runs the prisma
#   CLI; both are devDependencies.
# - --ignore-scripts: package.json's `allowScripts` map (every dependency script off) is read by
#   npm 11 only; this image's npm 10 would run them all. Ignoring scripts gives the same result on
#   any npm, and the root postinstall (`prisma generate`) is then run explicitly.
# - .npmrc's onnxruntime-node-install=skip keeps the CPU (and WebGPU) providers bundled in the
#   package; ORT_CUDA=1 fetches the CUDA provider explicitly afterwards.
RUN npm ci --include=dev --ignore-scripts \
  && npx prisma generate \
  && if [ "$ORT_CUDA" = "1" ]; then \
       ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js; \
     fi \
  && npm cache clean --force

# Spool and model locations inside the container; compose mounts a named volume on the spool
# (its ownership is copied from here on first use) and the model directory read-only.
RUN mkdir -p /var/lib/kneegrade/spool /opt/kneegrade/models \
  && chown -R node:node /var/lib/kneegrade

ENV NODE_ENV=production \
    PATH=/app/node_modules/.bin:$PATH \
    SPOOL_DIR=/var/lib/kneegrade/spool \
    MODEL_DIR=/opt/kneegrade/models

USER node

EXPOSE 11112

ENTRYPOINT ["kneegrade"]
CMD ["serve"]

# --- GPU worker for CUDA 12 hosts ------------------------------------------------------------------
# onnxruntime 1.30's CUDA provider needs CUDA 12.x and cuDNN 9 user-space libraries (this base) and an
# NVIDIA driver >= 525 on the host with the NVIDIA Container Toolkit. Build it with ORT_CUDA=1 and
# network access (the provider comes from NuGet): see docs/DEPLOYMENT.md ("GPU hosts").
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS gpu
RUN apt-get update \
  && apt-get install -y --no-install-recommends libvulkan1 ca-certificates \
  && rm -rf /var/lib/apt/lists/* \
  && groupadd --gid 1000 node || true \
  && (id node >/dev/null 2>&1 || useradd --uid 1000 --gid node --create-home node)
COPY --from=app /usr/local/bin/node /usr/local/bin/node
COPY --from=app /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
  && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
COPY --from=app --chown=node:node /app /app
RUN mkdir -p /var/lib/kneegrade/spool /opt/kneegrade/models \
  && chown -R node:node /var/lib/kneegrade
WORKDIR /app
ENV NODE_ENV=production \
    PATH=/app/node_modules/.bin:$PATH \
    SPOOL_DIR=/var/lib/kneegrade/spool \
    MODEL_DIR=/opt/kneegrade/models \
    INFERENCE_PROVIDERS=cuda,webgpu,cpu \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
USER node
ENTRYPOINT ["kneegrade"]
CMD ["serve", "--only", "worker"]

# The default target stays the CPU image.
FROM app
