#!/usr/bin/env bash
# Install the Debian packages in debian-packages.txt that are missing, when running as root.
# Not root: print the apt-get command and go on (the Python build may still succeed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v dpkg-query > /dev/null 2>&1; then
  echo "system-deps: not a Debian system; install the equivalents of $here/debian-packages.txt"
  exit 0
fi
missing=()
while read -r pkg _; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2> /dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < "$here/debian-packages.txt"
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "system-deps: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "system-deps: missing Debian packages: ${missing[*]}" >&2
  echo "system-deps: run  sudo apt-get install ${missing[*]}" >&2
fi
