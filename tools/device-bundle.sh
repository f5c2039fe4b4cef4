#!/bin/sh
# Prepare what a lent GPU machine needs to run the device check
# (tools/device-bench.sh): that machine reaches no package archive, so the
# built programs travel with every shared library they need that is not the
# C library, the Vulkan loader as Debian packages, and the shape tables the
# benchmark builds its random full-size models from.
#
#   tools/device-bundle.sh            builds (release) into build-device/ and
#                                     fills .devbundle/ (ignored by git)
#
# Then, with the device tool:  run carry=[".devbundle"]
#   command: sh tools/device-bench.sh
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
B=${BUILD:-build-device}   # BUILD=build reuses an existing build
D=.devbundle
grep -qx '/.devbundle/' .git/info/exclude 2>/dev/null || echo '/.devbundle/' >>.git/info/exclude

tools/install-deps.sh
[ -f $B/build.ninja ] || meson setup $B --buildtype=release -Dgimp=disabled
ninja -C $B backend/impasto tests/test-ops

rm -rf $D
mkdir -p $D/bin $D/lib $D/deb $D/shapes
cp $B/backend/impasto $B/tests/test-ops $D/bin/
# every shared library but the C library itself and the Vulkan loader (the
# loader comes as a package below, so it finds the machine's ICD files)
for exe in $D/bin/*; do
  ldd "$exe" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  case $(basename "$lib") in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*|ld-linux*|libvulkan.so.*) ;;
    *) cp -L "$lib" $D/lib/ ;;
  esac
done
# the loader, as the device tool's README recommends
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64-lists'
mkdir -p /tmp/amd64-lists/partial
apt-get $o update -qq
(cd $D/deb && apt-get $o download libvulkan1 >/dev/null)
golden=${IMPASTO_GOLDEN_DIR:-$root/../shared/golden}
cp "$golden"/shapes/*_single_file.json $D/shapes/
du -sh $D
echo "device-bundle: ready in $D; carry it and run: sh tools/device-bench.sh"
