#!/bin/bash
# The GIMP 3 front end of the Impasto plug-in, built and tested in a Debian 13
# (trixie) chroot, whose archive has GIMP 3.0 and libgimp-3.0-dev.
#
#   tools/gimp3-chroot-test.sh [CHROOT]      (default: build-gimp3-chroot/ here)
#
# Stages:
#   1. once: debootstrap --variant=minbase trixie (a minute or two);
#   2. apt install gimp, libgimp-3.0-dev, the build dependencies and Xvfb
#      tools (again whenever a package of the list is missing);
# and on every run:
#   3. sync this source tree (no build folders, no .git) to /src and the tiny
#      golden model to /golden, configure with meson, build the GIMP 3 plug-in
#      and the backend (ninja -j1);
#   4. run tests/gimp/gimp3-test.sh in the chroot: gimp-console-3.0 batch runs
#      of the three procedures, checked pixel by pixel.
# /proc, /sys, /dev and /dev/shm are mounted for the run and unmounted after.
#
# Exit status: 0 pass, 1 fail, 77 skip (with the reason: not root, no
# debootstrap and it cannot be installed, the mirror is unreachable while a
# stage needs it, the golden data is missing). IMPASTO_DEBIAN_MIRROR overrides
# the mirror (default http://deb.debian.org/debian).
set -u

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${1:-$SRC/build-gimp3-chroot}
MIRROR=${IMPASTO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=trixie
JOBS=${IMPASTO_CHROOT_JOBS:-1}
PKGS="gimp libgimp-3.0-dev meson ninja-build pkg-config gcc libc6-dev
libglib2.0-dev libjson-glib-dev libsoup-3.0-dev libpng-dev zlib1g-dev
libvulkan-dev mesa-vulkan-drivers glslang-tools spirv-tools python3 python3-pil
xvfb xauth xdotool imagemagick"

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
say() { echo "gimp3-chroot: $*"; }

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap and chroot)"
golden=${IMPASTO_GOLDEN_DIR:-$SRC/../shared/golden}
[ -f "$golden/sd15-tiny/diffusers/model_index.json" ] \
  || skip "the tiny golden model is not at $golden/sd15-tiny/diffusers"

online() {
  local host
  host=$(echo "$MIRROR" | sed -E 's#^[a-z]+://([^/:]+).*#\1#')
  timeout 20 bash -c "exec 3<>/dev/tcp/$host/80" 2>/dev/null
}

mounted=()
unmount_all() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}" 2>/dev/null
  done
  mounted=()
}
trap unmount_all EXIT

mount_all() {
  mkdir -p "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
  mount -t proc proc "$ROOT/proc" && mounted+=("$ROOT/proc")
  mount -t sysfs sysfs "$ROOT/sys" && mounted+=("$ROOT/sys")
  mount --bind /dev "$ROOT/dev" && mounted+=("$ROOT/dev")
  mount -t tmpfs shm "$ROOT/dev/shm" && mounted+=("$ROOT/dev/shm")
  [ ${#mounted[@]} = 4 ] || fail "could not mount /proc, /sys, /dev, /dev/shm in $ROOT"
}

in_chroot() {
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"
}

# 1. the base system
if [ ! -f "$ROOT/.impasto-stage-base" ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    "$SRC/tools/install-deps.sh" --gimp3 >/dev/null 2>&1 \
      || skip "debootstrap is not installed and could not be installed"
  fi
  online || skip "cannot reach $MIRROR (no network) to build the chroot"
  say "debootstrap $SUITE into $ROOT"
  rm -rf "$ROOT"
  t0=$SECONDS
  debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" > "$SRC/build-gimp3-debootstrap.log" 2>&1 \
    || { tail -n 20 "$SRC/build-gimp3-debootstrap.log"; skip "debootstrap failed (see build-gimp3-debootstrap.log)"; }
  say "debootstrap: $((SECONDS - t0)) s"
  touch "$ROOT/.impasto-stage-base"
fi

mount_all

# 2. GIMP 3 and the build dependencies (again when this list grew)
missing=""
for p in $PKGS; do
  in_chroot dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  online || skip "cannot reach $MIRROR (no network) to install$missing in the chroot"
  say "apt install:$missing"
  t0=$SECONDS
  in_chroot apt-get -qq update || fail "apt-get update in the chroot"
  # shellcheck disable=SC2086
  in_chroot apt-get install -y -qq --no-install-recommends $PKGS > "$ROOT/apt.log" 2>&1 \
    || { tail -n 30 "$ROOT/apt.log"; fail "apt install in the chroot"; }
  say "apt install: $((SECONDS - t0)) s"
fi
say "$(in_chroot dpkg-query -W -f '${Package} ${Version}\n' gimp libgimp-3.0-dev | tr '\n' ' ')"

# 3. the source, the model, the build
# Only files whose content changed are copied, with a new mtime: copying
# with the original mtimes can leave a header older than objects built from
# its previous version, and ninja would then keep stale objects.
say "syncing the source tree"
rm -rf "$ROOT/src.new" "$ROOT/golden"
mkdir -p "$ROOT/src" "$ROOT/src.new" "$ROOT/golden/sd15-tiny"
tar -C "$SRC" --exclude='./build*' --exclude='./.git' --exclude='./demo-output' -cf - . \
  | tar -C "$ROOT/src.new" -xf - || fail "copying the source"
(cd "$ROOT/src.new" && find . -type f) | while read -r f; do
  if ! cmp -s "$ROOT/src.new/$f" "$ROOT/src/$f"; then
    mkdir -p "$(dirname "$ROOT/src/$f")" && cp "$ROOT/src.new/$f" "$ROOT/src/$f"
  fi
done
(cd "$ROOT/src" && find . -type f) | while read -r f; do
  [ -e "$ROOT/src.new/$f" ] || rm -f "$ROOT/src/$f"
done
rm -rf "$ROOT/src.new"
cp -a "$golden/sd15-tiny/diffusers" "$ROOT/golden/sd15-tiny/" || fail "copying the model"
t0=$SECONDS
if [ ! -f "$ROOT/build/build.ninja" ]; then
  in_chroot meson setup /build /src -Dgimp=disabled -Dgolden_dir=/golden > "$ROOT/meson.log" 2>&1 \
    || { tail -n 40 "$ROOT/meson.log"; fail "meson setup in the chroot"; }
fi
in_chroot ninja -C /build -j "$JOBS" plugin/gimp3/impasto backend/impasto > "$ROOT/ninja.log" 2>&1 \
  || { grep -E "error|Error" "$ROOT/ninja.log" | head -n 40; tail -n 20 "$ROOT/ninja.log"; fail "building in the chroot"; }
say "build: $((SECONDS - t0)) s"

# 4. the test
t0=$SECONDS
in_chroot /src/tests/gimp/gimp3-test.sh /build/plugin/gimp3/impasto /build/backend/impasto \
  /golden/sd15-tiny/diffusers /build/gimp3-artefacts
rc=$?
say "test: $((SECONDS - t0)) s (exit $rc)"
exit $rc
