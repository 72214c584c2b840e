#!/usr/bin/env bash
# The README's first quick-start command: installs what is missing, builds, and runs the whole
# job (prepare → upload → deploy) on a local default that needs no internet.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# install-deps.sh may have put a maintained Node.js in .tools/node: use it from here on.
# shellcheck source=scripts/node.sh
source scripts/node.sh
npm run --silent quickstart -- "$@"
