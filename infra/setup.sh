#!/usr/bin/env bash
# One set-up step for a fresh machine, shared by `npm test` (its pretest), `npm run demo` and CI
# (`.ci/run`): installs the Debian packages the tests and the demo need, starts the local PostgreSQL
# and Redis when they are installed but down, installs the npm dependencies and migrates the
# database. Every step checks first and does nothing when there is nothing to do (≈ 1 s then).
#
#   bash infra/setup.sh            # what `npm test` and `npm run demo` run first
#   KNEEGRADE_SETUP=skip npm test  # skip it (a machine you manage yourself, a container)
#
# Without root or password-less sudo it installs nothing and prints the one command to run.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "${KNEEGRADE_SETUP:-}" = "skip" ] && exit 0

export CHECKPOINT_DISABLE=1          # Prisma: no telemetry call (offline)
export ONNXRUNTIME_NODE_INSTALL=skip # onnxruntime-node: no CUDA download (offline); see .npmrc

say() { printf '==> setup: %s\n' "$*"; }

# --- Debian packages ------------------------------------------------------------------------------
# Keep this list the single place that names them (README "Quick start" says what each is for).
APT_PACKAGES=(
  dcmtk libgdcm-tools dicom3tools orthanc                  # DICOM peers (storescu, PACS), validators
  orthanc-dicomweb                                         # Orthanc's DICOMweb, for the viewer test (OHIF)
  pixelmed-apps                                            # a second validator: pixelmed's DicomSRValidator
  docker-compose xz-utils                                  # compose file check, the GPU benchmark pack
  chromium                                                 # the review pages' browser tests (playwright-core)
  postgresql redis-server                                  # the real services the tests talk to
  python3-torch python3-torchvision python3-onnx python3-numpy python3-pil python3-opencv
  python3-pytest python3-pydicom                           # models/ (training, export, tests)
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo)
  else
    echo "setup: these Debian packages are missing: ${missing[*]}" >&2
    echo "setup: install them once (needs root), then run the command again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- local services -------------------------------------------------------------------------------
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  say "starting Redis on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/kneegrade-setup.log
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  say "starting PostgreSQL on 127.0.0.1:5432 (trust auth on loopback, as the defaults expect)"
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  grep -q "kneegrade-setup" "$hba" || sed -i '1i host all all 127.0.0.1/32 trust # kneegrade-setup\nhost all all ::1/128 trust # kneegrade-setup\nlocal all all trust # kneegrade-setup' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
for _ in $(seq 1 30); do
  pg_isready -h 127.0.0.1 -p 5432 -q && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break
  sleep 1
done
pg_isready -h 127.0.0.1 -p 5432 -q || { echo "setup: PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }
redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || { echo "setup: Redis does not answer on 127.0.0.1:6379" >&2; exit 1; }

# --- npm dependencies -----------------------------------------------------------------------------
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund
fi

# --- database -------------------------------------------------------------------------------------
# The default DATABASE_URL's database (the tests migrate their own, kneegrade_test, in tests/global-setup.ts).
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='kneegrade'" | grep -q 1 || {
  say "creating database kneegrade"
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE kneegrade"
}
if [ -z "${DATABASE_URL:-}" ] || [ "${DATABASE_URL}" = "postgresql://postgres@127.0.0.1:5432/kneegrade" ]; then
  applied=$(psql -h 127.0.0.1 -U postgres -d kneegrade -tAc \
    "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL ORDER BY 1" 2>/dev/null || true)
  wanted=$(find prisma/migrations -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
  if [ "$applied" != "$wanted" ]; then
    say "applying database migrations (prisma migrate deploy)"
    npx prisma migrate deploy
  fi
fi
