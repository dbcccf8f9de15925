#!/usr/bin/env bash
# The test command of the README (and of CI): installs what is missing, builds, writes the
# demo/test model repository if missing, and runs every test with CTest. In CI (CI set, e.g.
# CI=true) it then runs a reproducible fuzzing pass, KILN_FUZZ_RUNS inputs (default 100000) per
# libFuzzer target from a fixed seed, with scripts/fuzz.sh (skipped, with a note, where clang is
# missing): the same work however busy the machine is; open-ended fuzzing is
# scripts/fuzz.sh SECONDS, run by hand.
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
    step "short fuzzing pass"; scripts/fuzz.sh --runs="${KILN_FUZZ_RUNS:-100000}" --seed=1
  else
    step "short fuzzing pass skipped: no clang++ (scripts/setup.sh installs it)"
  fi
fi
step "done"
