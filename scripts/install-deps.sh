#!/usr/bin/env bash
# Installs what bundle's tests and quick start need on a fresh Debian machine: the Docker
# Distribution registry, skopeo (the independent checker), git, and the Docker daemon; a
# maintained Node.js (22 or later) in .tools/node when the machine's is older (scripts/node.sh;
# callers source that file afterwards to use it); then the npm packages from the lockfile.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(docker-registry skopeo git docker.io ca-certificates time)
# npm fetches a maintained Node.js below when the machine's is too old; it needs some node to run.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package starts a registry service where systemd runs; the tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

# shellcheck source=scripts/node.sh
source scripts/node.sh
bundle_install_node

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
