#!/usr/bin/env bash
# Builds the local base images kneegrade's Dockerfile and docker-compose.yml fall back to when no
# image registry is reachable (as on the development machines): a Debian trixie root file system made
# with debootstrap from the apt mirror this machine already uses, imported as an image, and on top of
# it (infra/docker/local/Dockerfile) Node 20 for building and running kneegrade, PostgreSQL, Redis and
# Orthanc from Debian's packages. Images that exist are kept (--force rebuilds them).
#
#   bash infra/docker/base-images.sh [--force]
#   bash infra/docker/base-images.sh --env      # only print the variables that select them
#
# A site with a registry needs none of this: the defaults (node:20-bookworm-slim, postgres:15,
# redis:7, orthancteam/orthanc) are pulled as usual.
set -euo pipefail
cd "$(dirname "$0")/../.."

PREFIX=${KNEEGRADE_LOCAL_PREFIX:-kneegrade-local}
SUITE=${KNEEGRADE_LOCAL_SUITE:-trixie}

print_env() {
  cat <<ENV
KNEEGRADE_BUILD_IMAGE=$PREFIX/node-build:20
KNEEGRADE_RUNTIME_IMAGE=$PREFIX/node:20
POSTGRES_IMAGE=$PREFIX/postgres
REDIS_IMAGE=$PREFIX/redis
ORTHANC_IMAGE=$PREFIX/orthanc
ENV
}
if [ "${1:-}" = "--env" ]; then print_env; exit 0; fi
force=0; [ "${1:-}" = "--force" ] && force=1

have() { [ "$force" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }
say() { echo "base-images: $*"; }

command -v docker >/dev/null || { say "docker is missing (apt-get install docker.io)"; exit 1; }
docker info >/dev/null 2>&1 || { say "the Docker daemon does not answer (start dockerd)"; exit 1; }

if ! have "$PREFIX/debian:$SUITE"; then
  command -v debootstrap >/dev/null || { say "debootstrap is missing (apt-get install debootstrap)"; exit 1; }
  # The mirror this machine's apt uses (deb822 URIs: line, or a one-line sources.list entry).
  mirror=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$mirror" ] || mirror=$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  root=$(mktemp -d /var/tmp/kneegrade-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  say "debootstrap --variant=minbase $SUITE from $mirror (about a minute)"
  debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - "$PREFIX/debian:$SUITE" >/dev/null
  rm -rf "$root"; trap - EXIT
  say "built $PREFIX/debian:$SUITE"
fi

for target in node-build node postgres redis orthanc; do
  tag="$PREFIX/$target"; [ "${target#node}" != "$target" ] && tag="$tag:20"
  if have "$tag"; then continue; fi
  say "building $tag"
  docker build -q --target "$target" --build-arg "DEBIAN_IMAGE=$PREFIX/debian:$SUITE" \
    -t "$tag" infra/docker/local >/dev/null
done
say "ready:"; print_env | sed 's/^/  /'
