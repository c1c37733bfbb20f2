#!/usr/bin/env bash
# The GPU benchmark on a GPU machine (or on any machine, CPU only), from the repository root:
#   bash var/gpu-pack/run.sh [--model-dir DIR] [bench options...]
# Unpacks node + onnxruntime-node, brings the Vulkan loaders where the machine lacks them,
# exports models/configs/gpu.json's ensemble (random weights: speed only) unless --model-dir is
# given, and runs the benchmark on webgpu and cpu; results go to $OUT/gpu-bench.json when $OUT is set.
set -euo pipefail
pack=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
tar -C "$work" -xJf "$pack/node-ort.tar.xz"
if [ -d "$pack/gl" ] && command -v nvidia-smi >/dev/null && ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in "$pack"/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
done
args=("$@")
if [[ " $* " != *" --model-dir "* ]]; then
  python3 -m models.bench_export --config models/configs/gpu.json --out "$work/model" \
    --batches 1 --repeats 1 >/dev/null
  args+=(--model-dir "$work/model" --allow-test-model)
fi
cp "$pack/bench.mjs" "$work/bench.mjs"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
echo "cpu cores: $(nproc)"
"$work/bin/node" "$work/bench.mjs" ${OUT:+--out "$OUT/gpu-bench.json"} "${args[@]}"
