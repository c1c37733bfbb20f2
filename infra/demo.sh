#!/usr/bin/env bash
# The main job, end to end on one machine: install if needed, start the pipeline, send it a sample
# knee study with DCMTK's storescu (the modality), and show what became of it.
# Today the pipeline ends at "queued for grading" (grading arrives with the model, issues 3-4).
set -euo pipefail
cd "$(dirname "$0")/.."
export CHECKPOINT_DISABLE=1 ONNXRUNTIME_NODE_INSTALL=skip

SHARED_DATA=${SHARED_DATA:-../shared/data}
DEMO_DIR=var/demo
PORT=${DEMO_LISTENER_PORT:-11112}
export LISTENER_PORT=$PORT LISTENER_HOST=127.0.0.1 STUDY_STABLE_SECONDS=${STUDY_STABLE_SECONDS:-3}
export SPOOL_DIR=${SPOOL_DIR:-$DEMO_DIR/spool} LOG_LEVEL=${LOG_LEVEL:-info}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
need() { command -v "$1" >/dev/null || { echo "demo: '$1' is missing: $2" >&2; exit 1; }; }
need storescu "install DCMTK (apt-get install dcmtk)"
need psql "install the PostgreSQL client (apt-get install postgresql-client)"

if [ ! -d node_modules ]; then step "installing (npm ci)"; npm ci --no-audit --no-fund; fi

step "database"
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='kneegrade'" | grep -q 1 ||
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE kneegrade"
npx prisma migrate deploy >/dev/null

step "sample study"
# Built from the NEMA WG04 test radiograph (../shared/data, not committed): a real CR image of a
# distal tibia, tagged as a knee study so that it is routed to grading. Sample data, not a patient.
SOURCE=$SHARED_DATA/dicom/wg04
[ -f "$SOURCE/RG3_UNC.dcm" ] || { echo "demo: $SOURCE/RG3_UNC.dcm not found (set SHARED_DATA)" >&2; exit 1; }
rm -rf "$DEMO_DIR/sample" && mkdir -p "$DEMO_DIR/sample"
uid() { node -e 'console.log("2.25." + BigInt("0x" + crypto.randomUUID().replaceAll("-", "")))'; }
STUDY_UID=$(uid); SERIES_UID=$(uid)
for f in RG3_UNC RG3_JPLL; do
  cp "$SOURCE/$f.dcm" "$DEMO_DIR/sample/$f.dcm" && chmod u+w "$DEMO_DIR/sample/$f.dcm"
  dcmodify -nb -m "(0020,000D)=$STUDY_UID" -m "(0020,000E)=$SERIES_UID" -m "(0008,0018)=$(uid)" \
    -i "(0018,0015)=KNEE" -i "(0008,1030)=XR KNEE DEMO" "$DEMO_DIR/sample/$f.dcm"
done
echo "study $STUDY_UID: 2 instances (explicit VR little endian, JPEG lossless)"

step "starting kneegrade (listener, worker, reporter) on port $PORT"
mkdir -p "$DEMO_DIR"
node packages/cli/bin/kneegrade.js serve >"$DEMO_DIR/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true; wait $SERVE 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do
  grep -q '"event":"serve.started"' "$DEMO_DIR/serve.log" 2>/dev/null && break
  kill -0 $SERVE 2>/dev/null || { cat "$DEMO_DIR/serve.log"; exit 1; }
  sleep 0.5
done
node packages/cli/bin/kneegrade.js echo

step "sending the study with DCMTK storescu (as a modality would)"
storescu -aet DEMO_MODALITY -aec KNEEGRADE 127.0.0.1 "$PORT" "$DEMO_DIR/sample/RG3_UNC.dcm"
storescu -xs -aet DEMO_MODALITY -aec KNEEGRADE 127.0.0.1 "$PORT" "$DEMO_DIR/sample/RG3_JPLL.dcm"

step "waiting for the study to be stable (${STUDY_STABLE_SECONDS}s without new instances)"
for _ in $(seq 1 60); do
  state=$(psql -h 127.0.0.1 -U postgres -d kneegrade -tAc \
    "SELECT status FROM \"Study\" WHERE \"studyInstanceUid\"='$STUDY_UID'")
  [ "$state" != "RECEIVING" ] && [ -n "$state" ] && break
  sleep 0.5
done

step "result"
node packages/cli/bin/kneegrade.js status --recent 3
echo
echo "Study $STUDY_UID is $state. Logs: $DEMO_DIR/serve.log"
[ "$state" = "QUEUED" ]
