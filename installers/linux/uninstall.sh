#!/usr/bin/env bash
# Remove what installers/linux/install.sh put in place: the launcher, the desktop entry, the
# icons, the autostart entry and the virtual environment it created. Settings, the audit log
# and downloaded models are kept unless --purge is given.
set -euo pipefail
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
CONFIG=${XDG_CONFIG_HOME:-$HOME/.config}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}
BIN_DIR=${TANDEM_BIN_DIR:-$HOME/.local/bin}
PURGE=0 KEEP_VENV=0
for arg in "$@"; do
  case "$arg" in
    --purge) PURGE=1 ;;
    --keep-venv) KEEP_VENV=1 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "uninstall.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
rm -f "$BIN_DIR/tandem" "$DATA/applications/tandem.desktop" "$CONFIG/autostart/tandem.desktop"
rm -f "$DATA"/icons/hicolor/scalable/apps/tandem.svg "$DATA"/icons/hicolor/scalable/apps/tandem-*.svg
MARK="$DATA/tandem/installed-venv"
if [ -f "$MARK" ] && [ "$KEEP_VENV" = 0 ]; then
  VENV=$(cat "$MARK")
  case "$VENV" in "$DATA"/tandem/*) rm -rf "$VENV" ;; *) echo "kept $VENV (not ours to delete)" ;; esac
fi
rm -f "$MARK"
if [ "$PURGE" = 1 ]; then
  rm -rf "$CONFIG/tandem" "$DATA/tandem" "$CACHE/tandem"
fi
rmdir "$DATA/tandem" 2> /dev/null || true
[ "$PURGE" = 1 ] && echo "Tandem removed, with its settings and data" || echo "Tandem removed (settings, audit log and models kept; --purge removes them)"
