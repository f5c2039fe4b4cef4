#!/bin/sh
# The device check, run on a lent GPU machine from the repository root with
# .devbundle/ (tools/device-bundle.sh) carried beside it. It prints and, when
# $OUT is set, writes under $OUT: the Vulkan device the engine chose, the op
# tests against their CPU references, and impasto bench (ops, SD 1.5 text,
# UNet 256 and 512, VAE 512, load, SDXL 1024 UNet) as JSON.
#
# Budget: about 6 minutes on an H200 (most of it writing the random models).
set -u
D=.devbundle
OUT=${OUT:-/tmp/impasto-device-out}
mkdir -p "$OUT"
[ -d $D/bin ] || { echo "device-bench: no $D; run tools/device-bundle.sh here first" >&2; exit 2; }
for f in $D/deb/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export LD_LIBRARY_PATH=$PWD/$D/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export XDG_CACHE_HOME=/tmp/impasto-cache IMPASTO_BENCH_SHAPES=$PWD/$D/shapes
bin=$PWD/$D/bin
log=$OUT/device-bench.log
say() { echo "== $*" | tee -a "$log"; }

say "$(date -u) $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null)"
"$bin/impasto" version 2>&1 | tee -a "$log"
say "memory plans"
"$bin/impasto" info --plan 512x512 $D/shapes/sd15_single_file.json 2>&1 | tail -n 12 | tee -a "$log"
"$bin/impasto" info --plan 1024x1024 $D/shapes/sdxl_base_single_file.json 2>&1 | tail -n 12 | tee -a "$log"
say "op tests (CPU references)"
timeout 240 "$bin/test-ops" 2>&1 | tail -n 5 | tee -a "$log"
run() {
  name=$1; shift
  say "impasto bench $*"
  timeout 300 "$bin/impasto" bench "$@" --json "$OUT/$name.json" 2>&1 | tee -a "$log"
}
run ops ops --runs 10
run text text --runs 5
run unet unet --size 512 --runs 10
run vae vae --size 512 --runs 5
run load load --runs 3
run sdxl unet --model sdxl --size 1024 --runs 5
say "done $(date -u)"
