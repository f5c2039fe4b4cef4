#!/bin/sh
# Run `impasto check-golden` on a golden manifest for the test suite.
#   run-check-golden.sh IMPASTO sd15|sdxl PRECISION [--case ID]...
# The data folder is $IMPASTO_GOLDEN_DIR / $IMPASTO_GOLDEN_SDXL_DIR (the meson
# test environment sets them to the configured defaults, so exporting them
# before `meson test` overrides). Missing data is a loud skip (exit 77).
impasto=$1; which=$2; precision=$3; shift 3
case $which in
  sd15) dir=$IMPASTO_GOLDEN_DIR ;;
  sdxl) dir=$IMPASTO_GOLDEN_SDXL_DIR ;;
  *) echo "unknown manifest '$which'" >&2; exit 2 ;;
esac
if [ ! -f "$dir/manifest.json" ]; then
  echo "SKIP: golden data not found at '$dir' (set IMPASTO_GOLDEN_DIR / IMPASTO_GOLDEN_SDXL_DIR)"
  exit 77
fi
exec "$impasto" check-golden "$dir/manifest.json" --precision "$precision" "$@"
