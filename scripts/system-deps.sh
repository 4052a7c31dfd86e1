#!/usr/bin/env bash
# Install the Debian packages listed in scripts/debian-packages.txt that are missing.
# Runs apt-get only when something is missing; needs root (CI and dev machines are root).
set -euo pipefail
list="$(dirname "$0")/debian-packages.txt"
missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  if [[ "$pkg" == *:* ]]; then  # "command:package": skip when the command is already there (e.g. another JRE)
    command -v "${pkg%%:*}" >/dev/null 2>&1 && continue
    pkg="${pkg#*:}"
  fi
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < "$list"
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "Missing Debian packages: ${missing[*]}. Run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
