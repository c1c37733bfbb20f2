#!/usr/bin/env bash
# `docker compose` for kneegrade, with or without an image registry:
#
#   bash infra/docker/compose.sh up -d          # build when needed, start the stack
#   bash infra/docker/compose.sh ps | logs -f worker | down
#
# When the official base images (node, postgres, redis, orthanc) are neither present nor pullable
# (no registry, as on the development machines), it builds local Debian-based stand-ins once
# (infra/docker/base-images.sh) and selects them through KNEEGRADE_BUILD_IMAGE, KNEEGRADE_RUNTIME_IMAGE,
# POSTGRES_IMAGE, REDIS_IMAGE and ORTHANC_IMAGE (values already set in the environment win).
# KNEEGRADE_BASE=local or =official skips the detection. Uses `docker compose` (v2) when present,
# docker-compose (v1) otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { echo "compose.sh: $*" >&2; }
command -v docker >/dev/null || { say "docker is missing: apt-get install docker.io (docs/DEPLOYMENT.md)"; exit 1; }
docker info >/dev/null 2>&1 || { say "the Docker daemon does not answer: start it (systemctl start docker, or dockerd)"; exit 1; }

base=${KNEEGRADE_BASE:-auto}
if [ "$base" = auto ]; then
  if docker image inspect node:20-bookworm-slim >/dev/null 2>&1; then
    base=official
  elif docker image inspect kneegrade-local/node:20 >/dev/null 2>&1; then
    base=local
  elif timeout 30 docker pull -q node:20-bookworm-slim >/dev/null 2>&1; then
    base=official
  else
    base=local
    say "no image registry answers: using local base images (infra/docker/base-images.sh)"
  fi
fi
if [ "$base" = local ]; then
  bash infra/docker/base-images.sh >&2
  while IFS='=' read -r key value; do
    [ -n "$key" ] && [ -z "${!key:-}" ] && export "$key=$value"
  done < <(bash infra/docker/base-images.sh --env)
fi

# Behind a TLS-inspecting proxy the image build must trust its CA: the host's extra CAs, unless the
# folder already holds the site's (infra/docker/ca-certificates/README.md).
if ! ls infra/docker/ca-certificates/*.crt >/dev/null 2>&1 && ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt infra/docker/ca-certificates/
  say "the image build trusts this host's extra CA certificates (copied to infra/docker/ca-certificates/)"
fi

if docker compose version >/dev/null 2>&1; then
  exec docker compose "$@"
fi
command -v docker-compose >/dev/null || { say "neither 'docker compose' nor docker-compose: apt-get install docker-compose"; exit 1; }
exec docker-compose "$@"
