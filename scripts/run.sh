#!/usr/bin/env bash
# The run command of the README: installs what is missing, builds, writes the demo model
# repository (models/) if missing, and runs kiln-server on it in the foreground.
# Usage: scripts/run.sh [kiln-server flags...]   e.g. scripts/run.sh --v=1
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build.sh
/usr/bin/python3 scripts/make_models.py --out models
# Loopback by default for a demo; later flags win (e.g. scripts/run.sh --host=0.0.0.0).
echo "run.sh: starting kiln-server on models/; it listens on 127.0.0.1:8001 once every worker" \
  "is warm (Ctrl-C stops it); metrics at http://127.0.0.1:8002/metrics from the start"
exec "${KILN_BUILD_DIR:-build}/server/kiln-server" --model_repository=models --host=127.0.0.1 \
  --port=8001 "$@"
