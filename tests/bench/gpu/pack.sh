#!/usr/bin/env bash
# Packs what the GPU benchmark needs on a GPU machine that has no Node.js into var/gpu-pack
# (git-ignored; copy it there beside the working tree):
#   node-ort.tar.xz  this machine's x86-64 `node` + onnxruntime-node (linux/x64 binaries only)
#   bench.mjs        tests/bench/gpu/gpu.bench.ts and @kneegrade/inference bundled by esbuild
#   gl/*.deb         Debian's Vulkan/GL loaders (skipped with --no-gl or when apt cannot fetch them)
#   run.sh           the device-side entry point
# The model is exported on the device by models/bench_export.py (its torch), so the ONNX files do
# not count against the pack's size. Usage: pack.sh [--no-gl] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=var/gpu-pack
gl=1
while (($#)); do
  case "$1" in
    --no-gl) gl=0 ;;
    --out) out="$2"; shift ;;
    *) echo "pack.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$(uname -m)" = x86_64 ] || { echo "pack.sh: the GPU machine is x86-64; pack on x86-64" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# node + onnxruntime-node (CPU and WebGPU providers are in its linux/x64 binary folder).
mkdir -p "$stage/node_modules/onnxruntime-node/bin/napi-v6/linux" "$stage/bin"
cp "$(command -v node)" "$stage/bin/node"
ort=node_modules/onnxruntime-node
cp "$ort/package.json" "$stage/$ort/"
cp -r "$ort/dist" "$stage/$ort/"
cp -r "$ort/bin/napi-v6/linux/x64" "$stage/$ort/bin/napi-v6/linux/"
cp -r node_modules/onnxruntime-common "$stage/node_modules/"
tar -C "$stage" -cf - bin node_modules | xz -6 -T0 > "$out/node-ort.tar.xz"

# The benchmark, bundled (onnxruntime-node stays external: it is native).
npx esbuild tests/bench/gpu/gpu.bench.ts --bundle --platform=node --format=esm --target=node20 \
  --external:onnxruntime-node --outfile="$out/bench.mjs" --log-level=warning \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"

if ((gl)); then
  mkdir -p "$out/gl" /tmp/amd64/partial
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  if apt-get "${o[@]}" update -qq >/dev/null 2>&1 &&
    (cd "$out/gl" && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1); then
    :
  else
    echo "pack.sh: could not download the Vulkan/GL loaders; the device may lack libvulkan" >&2
    rm -rf "$out/gl"
  fi
fi
cp tests/bench/gpu/run.sh "$out/run.sh"
size=$(du -sb "$out" | cut -f1)
echo "packed $out: $((size / 1024 / 1024)) MiB ($(ls "$out" | tr '\n' ' '))"
# Kept small enough to copy with the working tree in one 64 MiB transfer.
if ((size > 60 * 1024 * 1024)); then echo "pack.sh: the pack is over 60 MiB" >&2; exit 1; fi
