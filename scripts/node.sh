# Sourced (not run) by install-deps.sh, quickstart.sh and .ci/run: puts a maintained Node.js
# (22 or later) first on PATH. That is the machine's own node when it is recent enough, else the
# one bundle_install_node put in .tools/node (gitignored) from the npm registry's prebuilt
# node-linux-<arch> package, the only place besides Debian a machine here can reach.
BUNDLE_NODE_MIN=22
BUNDLE_NODE_LINE=24
BUNDLE_NODE_PREFIX="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools/node"

bundle_node_major() {
  node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

bundle_use_node() {
  case ":$PATH:" in
    *":$BUNDLE_NODE_PREFIX/bin:"*) ;;
    *) if [ -x "$BUNDLE_NODE_PREFIX/bin/node" ]; then PATH="$BUNDLE_NODE_PREFIX/bin:$PATH"; fi ;;
  esac
  export PATH
  hash -r
}

bundle_install_node() {
  bundle_use_node
  if [ "$(bundle_node_major)" -ge "$BUNDLE_NODE_MIN" ]; then return 0; fi
  local arch
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) echo "error: no prebuilt Node.js for $(uname -m); install Node.js $BUNDLE_NODE_MIN or later" >&2; return 1 ;;
  esac
  echo "installing Node.js $BUNDLE_NODE_LINE into .tools/node from the npm registry" \
    "(this machine has $(node --version 2>/dev/null || echo no node); bundle needs $BUNDLE_NODE_MIN or later)"
  npm install --global --prefix "$BUNDLE_NODE_PREFIX" --no-audit --no-fund --loglevel=error \
    "node-linux-$arch@$BUNDLE_NODE_LINE"
  bundle_use_node
  echo "using node $(node --version) from $(command -v node)"
}

bundle_use_node
