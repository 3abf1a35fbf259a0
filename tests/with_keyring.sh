#!/usr/bin/env bash
# Run a command inside a private D-Bus session with a real, unlocked gnome-keyring.
# Usage: tests/with_keyring.sh CMD [ARGS...]. The daemon outlives the bus, so it is killed
# on exit. HOME points at a throw-away folder so the user's own keyring is never touched.
set -euo pipefail
KH=$(mktemp -d /tmp/tandem-keyring.XXXXXX)
trap 'rm -rf "$KH"' EXIT
env HOME="$KH" XDG_DATA_HOME="$KH/data" XDG_RUNTIME_DIR="$KH" dbus-run-session -- bash -c '
  printf "tandem-test" | gnome-keyring-daemon --unlock --components=secrets > /dev/null
  stop_daemon() {
    pid=$(dbus-send --session --print-reply --dest=org.freedesktop.DBus / \
      org.freedesktop.DBus.GetConnectionUnixProcessID string:org.freedesktop.secrets 2> /dev/null \
      | awk "/uint32/ {print \$2}")
    [ -n "$pid" ] && kill "$pid" 2> /dev/null
    true
  }
  trap stop_daemon EXIT
  "$@"' bash "$@"
