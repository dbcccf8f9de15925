#!/usr/bin/env bash
# Configures (once) and builds kiln into build/ (Release, Ninja). Extra arguments go to CMake's
# configure step, e.g. scripts/build.sh -DKILN_BUILD_TESTS=OFF. Needs scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${KILN_BUILD_DIR:-build}
JOBS=${KILN_JOBS:-$(nproc)}

start=$(date +%s)
if [ ! -f "$BUILD_DIR/build.ninja" ] || [ $# -gt 0 ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
fi
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "build: $BUILD_DIR ready in $(( $(date +%s) - start ))s"
