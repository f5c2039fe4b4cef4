#!/bin/sh
# spirv-val over every compiled shader module (TAP). Arguments: the spirv-val
# program, then the .spv files (built by shaders/meson.build). Each module must
# be valid SPIR-V for the Vulkan 1.2 environment the runtime targets.
set -u
val="$1"
shift
if [ "$val" = none ]; then
  echo "1..0 # SKIP spirv-val is not installed (Debian package spirv-tools)"
  exit 0
fi
if [ $# -eq 0 ]; then
  echo "1..0 # SKIP no SPIR-V modules were given"
  exit 0
fi
echo "1..$#"
n=0
fail=0
for spv in "$@"; do
  n=$((n + 1))
  name=$(basename "$spv" .spv)
  if out=$("$val" --target-env vulkan1.2 "$spv" 2>&1); then
    echo "ok $n $name"
  else
    echo "not ok $n $name"
    printf '%s\n' "$out" | sed 's/^/# /'
    fail=1
  fi
done
exit $fail
