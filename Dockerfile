# One image for the three kneegrade services (listener, worker, reporter) and the one-shot
# migration; docker-compose.yml picks the service with `serve --only ...`. See docs/DEPLOYMENT.md.
FROM node:20-bookworm-slim

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
