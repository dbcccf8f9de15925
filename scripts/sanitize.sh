#!/usr/bin/env bash
# Builds kiln with AddressSanitizer + UndefinedBehaviorSanitizer (gcc, -DKILN_SANITIZE=ON) into
# build-sanitize/ and runs the unit and integration tests there with CTest. The integration tests
# start build-sanitize's kiln-server, so the master, the zygote and every worker are checked too.
#
# Usage: scripts/sanitize.sh [ctest arguments...]   e.g. scripts/sanitize.sh -R ipc_test
#
# Every process writes its sanitizer report to build-sanitize/sanitizer-logs/<exe>.<pid> (emptied
# each run), not to stderr: a worker that dies of a report is restarted by its pool and a test may
# still pass, so the script fails when any report was written, and prints them. LibTorch, gRPC,
# glog and the other Debian libraries are not instrumented; kiln's code is.
#
# Skipped (SKIPPED below, each with its reason): the tests that load the SentencePiece shim, which
# is dlopen()ed with RTLD_DEEPBIND, and ASan's runtime aborts any process that does that; and the
# tests whose measure is meaningless under ASan (listed with the reason next to each).
# KILN_JOBS (default 2) sets the build's and CTest's parallelism.
set -euo pipefail
cd "$(dirname "$0")/.."

build=build-sanitize
jobs=${KILN_JOBS:-2}
logs="$PWD/$build/sanitizer-logs"
start=$(date +%s)
step() { echo "== sanitize.sh: $* ($(( $(date +%s) - start ))s)"; }

# Exact CTest names (binary:test case). Keep this list short: a skip hides the test from both
# sanitizers. Reasons are per group.
SKIPPED=(
  # RTLD_DEEPBIND (worker/tokenizer.cc): ASan's dlopen interceptor reports "RTLD_DEEPBIND flag
  # which is incompatible with sanitizer runtime" and kills the process (google/sanitizers#611).
  "tokenizer_test:Loading a tokenizer starts no thread (it runs in the master before fork)"
  "tokenizer_test:A shim that cannot be loaded is an error naming every path tried and why"
  "tokenizer_test:A process with LibTorch and gRPC loads the tokenizer and encodes like spm_encode"
  "tokenizer_test:vocab_size is the model's vocabulary and bounds every id"
  "tokenizer_test:Empty text gives no ids"
  "tokenizer_test:A long text encodes completely, beyond the first buffer"
  "tokenizer_test:Encode is safe to call from several threads at once"
  "tokenizer_test:A missing or invalid model file is an error naming the file"
  # ... and the servers that serve textcls: the master loads its tokenizer at startup and dies.
  "kiln_server_test:every demo model answers ModelInfer with PyTorch's reference output, and the metadata RPCs describe the server and the models"
  "kiln_server_test:every bad request gets NOT_FOUND or INVALID_ARGUMENT naming the tensor, and the server keeps serving"
  "kiln_server_test:textcls answers text: PyTorch's reference logits, padded to a warmed length and batch, counted, and the warmup report says what warmed"
  "kiln_server_test:a text request kept with --record_samples is saved as its texts, and the next start warms the length it ran at on them"
  # Memory measured through the allocator: ASan keeps freed blocks in its quarantine (256 MiB)
  # and its allocator ignores malloc_trim, so a released heap copy still counts as anonymous memory.
  "worker_test:after the rebind the heap copy of the weights is released"
  # A 750 MB memory cgroup: ASan's shadow memory and quarantine put the master and zygote alone at
  # ~376 MB of working set, so the server refuses its workers before the test can measure them.
  "kiln_server_test:in a real memory cgroup, workers are admitted by the cgroup's working set and their measured private peak, and a count past the limit is refused with the numbers"
)

# --- configure (once) and build ------------------------------------------------------------------
if [ ! -f "$build/build.ninja" ]; then
  step "configure $build"
  # -O2 -g1: optimised like the real build (the integration tests bound latencies), with line
  # tables for the reports' stacks.
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DKILN_SANITIZE=ON
fi
step "build"
cmake --build "$build" -j "$jobs"
[ -d models ] || { step "make test models"; /usr/bin/python3 scripts/make_models.py --out models; }

# --- the sanitizers' settings --------------------------------------------------------------------
rm -rf "$logs" && mkdir -p "$logs"
# Leak checking stays on (a leak is a report); init-order checks on; no fake stacks (their
# memory and time are too much for the integration tests on 2 cores).
export ASAN_OPTIONS="log_path=$logs/asan:log_exe_name=1:halt_on_error=1:detect_leaks=1:\
check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=0"
# -fno-sanitize-recover=undefined makes any UBSan finding fatal; print its stack. gcc's libubsan
# ignores log_path beside libasan, so UBSan reports go to stderr: the tests' output, which CTest
# keeps, and a test server's log, which tests/integration/server_process.cc copies there when it has one.
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# --- run ------------------------------------------------------------------------------------------
exclude=""
for name in "${SKIPPED[@]}"; do  # each name as an anchored, escaped CTest regex
  exclude+="${exclude:+|}^$(printf '%s' "$name" | sed 's/[][\\.*^$+?(){}|]/\\&/g')\$"
done
total=$(ctest --test-dir "$build" -N | sed -n 's/^Total Tests: //p')
step "run tests ($total registered, ${#SKIPPED[@]} skipped)"
status=0
ctest --test-dir "$build" --output-on-failure -j "$jobs" ${exclude:+-E "$exclude"} "$@" || status=$?

# The first lines of each UBSan report; the whole of it is in LastTest.log.
grep -n -A3 ': runtime error: ' "$build/Testing/Temporary/LastTest.log" > "$logs/ubsan.from-ctest" ||
  rm "$logs/ubsan.from-ctest"
reports=$(find "$logs" -type f | sort)
if [ -n "$reports" ]; then
  for report in $reports; do echo "--- $report"; cat "$report"; done
  echo "sanitize.sh: $(echo "$reports" | wc -l) sanitizer report(s) above" >&2
  status=1
fi
step "done: ctest exit $status, $(echo -n "$reports" | grep -c . || true) reports, ${#SKIPPED[@]} skipped"
exit $status
