#!/bin/sh
# Install the Debian 12 packages Impasto needs to build, test and run its demo.
# Idempotent: does nothing (and needs no root) when everything is present.
#   tools/install-deps.sh            build + test + demo packages
#   tools/install-deps.sh --train    also what tools/train-demo-model needs
#   tools/install-deps.sh --gimp3    also what tools/gimp3-chroot-test.sh needs
set -eu

PKGS="meson ninja-build pkg-config gcc libc6-dev make
libglib2.0-dev libjson-glib-dev libsoup-3.0-dev libpng-dev
libvulkan-dev mesa-vulkan-drivers vulkan-tools vulkan-validationlayers
glslang-tools spirv-tools
libgimp2.0-dev gimp
xvfb xauth x11-utils xdotool gtk2-engines-pixbuf imagemagick
python3 python3-pil
clang libclang-rt-14-dev"

if [ "${1:-}" = "--train" ]; then
  # libopenblas0-pthread: Debian's torch calls the system libblas.so.3; the
  # default reference BLAS makes its matmuls ~10x slower than OpenBLAS.
  PKGS="$PKGS python3-torch python3-numpy fonts-noto-color-emoji unicode-data unicode-cldr-core libopenblas0-pthread"
fi
# tools/gimp3-chroot-test.sh (GIMP 3 in a Debian 13 chroot) needs debootstrap.
if [ "${1:-}" = "--gimp3" ]; then
  PKGS="$PKGS debootstrap"
fi

missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing="$missing $p"
  fi
done

if [ -z "$missing" ]; then
  exit 0
fi

echo "install-deps: installing:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "install-deps: need root (or sudo) to install:$missing" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=900 update -qq || true
# shellcheck disable=SC2086
$SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $missing
