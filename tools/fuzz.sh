#!/bin/bash
# tools/fuzz.sh [RUNS] [SECONDS]: build the safetensors fuzz target with clang,
# libFuzzer, ASan and UBSan, and fuzz it in ONE process from the seed corpus.
#
#   RUNS     executions to stop after (default 10000000)
#   SECONDS  time limit (default 3600)
#   FUZZ_OUT build and work folder (default build-fuzz/ in the repository)
#
# New interesting inputs go to $FUZZ_OUT/work-corpus (the seed corpus in
# tests/fuzz/corpus/safetensors is only read); crashes to $FUZZ_OUT/artifacts/.
# Add the inputs of fixed crashes to the seed corpus so the replay test keeps
# them. Needs clang and libclang-rt-14-dev (Debian 12).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${FUZZ_OUT:-$ROOT/build-fuzz}
RUNS=${1:-10000000}
SECS=${2:-3600}
mkdir -p "$OUT/work-corpus" "$OUT/artifacts"
# The sources include config.h; nothing in it is used by the model-file layer.
: > "$OUT/config.h"

SRC=(sd-error.c half.c safetensors.c name-map.c model-detect.c sd-model.c model-describe.c)
FLAGS=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -fno-omit-frame-pointer -std=gnu11 -D_FILE_OFFSET_BITS=64)
# shellcheck disable=SC2046
clang "${FLAGS[@]}" -I"$OUT" -I"$ROOT/diffusion" $(pkg-config --cflags glib-2.0 gio-2.0 json-glib-1.0) \
  "$ROOT/tests/fuzz/fuzz-safetensors.c" "${SRC[@]/#/$ROOT/diffusion/}" \
  $(pkg-config --libs glib-2.0 gio-2.0 json-glib-1.0) -lm -o "$OUT/fuzz-safetensors"

cd "$OUT"
export G_SLICE=always-malloc
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
exec ./fuzz-safetensors -runs="$RUNS" -max_total_time="$SECS" -max_len=16384 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -dict="$ROOT/tests/fuzz/safetensors.dict" \
  -artifact_prefix="$OUT/artifacts/" "$OUT/work-corpus" "$ROOT/tests/fuzz/corpus/safetensors"
