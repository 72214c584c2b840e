#!/usr/bin/env bash
# The README's first quick-start command: installs what is missing, builds, and runs the whole
# job (prepare → upload → deploy) on a local default that needs no internet.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm run build --silent
node dist/scripts/quickstart.js "$@"
