#!/bin/sh
# Install the Impasto plug-in for the current user, from a build folder:
#
#   tools/install-gimp-plugin.sh [BUILD_DIR]          (default: build)
#
# GIMP 2.10: BUILD_DIR/plugin/impasto -> ~/.config/GIMP/2.10/plug-ins/impasto/impasto
# GIMP 3:    BUILD_DIR/plugin/gimp3/impasto -> ~/.config/GIMP/3.0/plug-ins/impasto/impasto
# (each when it was built; GIMP2_DIRECTORY / GIMP3_DIRECTORY are honoured).
# The backend BUILD_DIR/backend/impasto is copied to ~/.local/bin/impasto,
# where the plug-in looks when no `impasto` is installed system-wide (it
# tries $IMPASTO_BACKEND, the configured prefix's bin/, PATH, then
# ~/.local/bin). Restart GIMP afterwards: the procedures are under
# Filters > Impasto. `meson install` installs system-wide instead.
set -eu

BUILD=${1:-build}
cfg=${XDG_CONFIG_HOME:-$HOME/.config}
installed=0

install_one() { # SRC DEST_DIR
  mkdir -p "$2"
  cp "$1" "$2/impasto.new"
  chmod 755 "$2/impasto.new"
  mv -f "$2/impasto.new" "$2/impasto"
  echo "installed $2/impasto"
  installed=1
}

if [ -x "$BUILD/plugin/impasto" ]; then
  install_one "$BUILD/plugin/impasto" "${GIMP2_DIRECTORY:-$cfg/GIMP/2.10}/plug-ins/impasto"
fi
if [ -x "$BUILD/plugin/gimp3/impasto" ]; then
  install_one "$BUILD/plugin/gimp3/impasto" "${GIMP3_DIRECTORY:-$cfg/GIMP/3.0}/plug-ins/impasto"
fi
if [ "$installed" = 0 ]; then
  echo "no plug-in in $BUILD (build it first: meson setup $BUILD && meson compile -C $BUILD)" >&2
  exit 1
fi
if [ -x "$BUILD/backend/impasto" ]; then
  mkdir -p "$HOME/.local/bin"
  cp "$BUILD/backend/impasto" "$HOME/.local/bin/impasto.new"
  mv -f "$HOME/.local/bin/impasto.new" "$HOME/.local/bin/impasto"
  echo "installed $HOME/.local/bin/impasto (the backend)"
else
  echo "warning: no backend in $BUILD/backend/impasto; the plug-in needs \`impasto\` installed" >&2
fi
echo "restart GIMP; the procedures are under Filters > Impasto"
