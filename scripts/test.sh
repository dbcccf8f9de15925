#!/usr/bin/env bash
# The test command of the README (and of CI): installs what is missing, builds, writes the
# demo/test model repository if missing, and runs every test with CTest. In CI (CI set, e.g.
# CI=true) it then runs each libFuzzer target for KILN_FUZZ_SECONDS (default 10) with
# scripts/fuzz.sh (skipped, with a note, where clang is missing).
# Usage: scripts/test.sh [ctest arguments...]   e.g. scripts/test.sh -R config
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
step() { echo "== test.sh: $* ($(( $(date +%s) - start ))s)"; }

step "set up packages";      scripts/setup.sh
step "build";                scripts/build.sh
step "make test models";     /usr/bin/python3 scripts/make_models.py --out models
step "run tests"
ctest --test-dir "${KILN_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" "$@"
if [ -n "${CI:-}" ]; then
  if command -v clang++ >/dev/null; then
    step "short fuzzing pass"; scripts/fuzz.sh "${KILN_FUZZ_SECONDS:-10}"
  else
    step "short fuzzing pass skipped: no clang++ (scripts/setup.sh installs it)"
  fi
fi
step "done"
