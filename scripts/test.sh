#!/usr/bin/env bash
# The test command of the README (and of CI): installs what is missing, builds, writes the
# demo/test model repository if missing, and runs every test with CTest. In CI (CI set, e.g.
# CI=true) it then runs a reproducible fuzzing pass, KILN_FUZZ_RUNS inputs (default 100000) per
# libFuzzer target from a fixed seed, with scripts/fuzz.sh (skipped, with a note, where clang is
# missing): the same work however busy the machine is; open-ended fuzzing is
# scripts/fuzz.sh SECONDS, run by hand.
# After the tests it lists the tests skipped on this machine with their reasons (KILN_SKIP), and
# at exit, failed or not, the seconds each step took and the total.
# Usage: scripts/test.sh [ctest arguments...]   e.g. scripts/test.sh -R config, scripts/test.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${KILN_BUILD_DIR:-build}
start=$(date +%s)
step_names=()
step_notes=()
step_seconds=()
current=""
current_start=0

# step NAME [NOTE]: ends the running step and starts NAME.
step() {
  end_step ""
  current=$1
  current_start=$(date +%s)
  echo "== test.sh: $1${2:+: $2} ($(( current_start - start ))s)"
}

# end_step NOTE: records the running step's seconds, if one is running.
end_step() {
  if [ -n "$current" ]; then
    step_names+=("$current")
    step_seconds+=("$(( $(date +%s) - current_start ))")
    step_notes+=("$1")
    current=""
  fi
}

# not_run NAME NOTE: a step that did not run, in the summary.
not_run() {
  end_step ""
  step_names+=("$1")
  step_seconds+=("-")
  step_notes+=("$2")
  echo "== test.sh: $1 not run: $2"
}

summary() {
  local status=$?
  if [ "$status" -ne 0 ]; then end_step "failed, exit $status"; else end_step ""; fi
  echo "== test.sh: time per step"
  printf '%-8s %8s\n' step seconds
  local i
  for i in "${!step_names[@]}"; do
    printf '%-8s %8s%s\n' "${step_names[$i]}" "${step_seconds[$i]}" \
      "${step_notes[$i]:+  (${step_notes[$i]})}"
  done
  printf '%-8s %8s\n' total "$(( $(date +%s) - start ))"
}
trap summary EXIT

# The tests CTest skipped in its last run, each with the reason it printed (tests/skip.h).
report_skips() {
  local log="$build_dir/Testing/Temporary/LastTest.log"
  [ -f "$log" ] || return 0
  local lines
  lines=$(awk '/^[0-9]+\/[0-9]+ Test: /{ sub(/^[0-9]+\/[0-9]+ Test: /, ""); name = $0 }
               /^KILN_SKIPPED: /{ sub(/^KILN_SKIPPED: /, ""); print "  " name ": " $0 }' "$log")
  if [ -n "$lines" ]; then
    echo "== test.sh: skipped on this machine ($(grep -c . <<<"$lines"), outputs in $log):"
    echo "$lines"
  fi
}

step set-up "install missing packages";  scripts/setup.sh
step build;                               scripts/build.sh
step models "write missing test models";  /usr/bin/python3 scripts/make_models.py --out models
step tests "ctest"
rm -f "$build_dir/Testing/Temporary/LastTest.log"  # so that report_skips reads this run only
ctest_status=0
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)" "$@" || ctest_status=$?
report_skips
if [ "$ctest_status" -ne 0 ]; then exit "$ctest_status"; fi
if [ -z "${CI:-}" ]; then
  not_run fuzz "CI unset: scripts/fuzz.sh runs it by hand"
elif command -v clang++ >/dev/null; then
  step fuzz "short fuzzing pass"; scripts/fuzz.sh --runs="${KILN_FUZZ_RUNS:-100000}" --seed=1
else
  not_run fuzz "no clang++ (scripts/setup.sh installs it)"
fi
end_step ""
echo "== test.sh: done"
