#!/usr/bin/env bash
# Fuzzes kiln's parsers of untrusted bytes with libFuzzer + ASan + UBSan (tests/fuzz/):
#   safetensors      the safetensors reader (ParseSafetensors)
#   infer_request    the OIP request decoding and validation (DecodeInferRequest)
#   worker_frames    the frames and arena references a worker reads (Receive, PrepareCall)
#   worker_results   what the master reads from a worker (warmup reports, results, outputs)
#   model_config     config.pbtxt and kiln.pbtxt through the loader (LoadModelVersions)
#   traffic_profile  <model>.traffic.pbtxt and <model>.samples.safetensors
#
# Usage: scripts/fuzz.sh [-h] [--runs=N [--seed=S]] [SECONDS] [TARGET...]
#   SECONDS   how long each target runs (default 60)
#   TARGET    the targets to run, by the names above (default: all, one after the other)
#   --runs=N  a reproducible pass instead (what CI runs: --runs=100000 --seed=1): each target
#             runs N inputs from libFuzzer's seed S (default 1), starting from the checked-in
#             seeds alone: the same work on a busy machine as on a quiet one, and nearly the same
#             path every time (Abseil's hash tables are seeded per process). SECONDS, if given,
#             only caps the time (default 600).
#
# Configures build-fuzz/ with clang and -DKILN_FUZZ=ON (once), builds the fuzzers, and runs each
# target for SECONDS on a working corpus, build-fuzz/fuzz/corpus/<target>: the checked-in seeds
# (tests/fuzz/corpus/<target>, copied in each run) plus what earlier runs found (kept between
# runs; the repository is never written; a --runs pass uses a fresh copy of the seeds and keeps
# nothing). Exits non-zero when a target crashes (a crash, an
# invariant violated, a sanitizer report, a leak, a timeout or running out of memory): it names the
# target and the input it saved under build-fuzz/fuzz/artifacts/<target>/; rerun one with
#   build-fuzz/tests/fuzz/<target>_fuzz build-fuzz/fuzz/artifacts/<target>/crash-...
# (KILN_FUZZ_VERBOSE=1 in the environment prints what each reader made of the input). The other
# targets still run. libFuzzer's output is in build-fuzz/fuzz/logs/<target>.log.
set -euo pipefail

TARGETS=(safetensors infer_request worker_frames worker_results model_config traffic_profile)

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  usage
  exit 0
fi
seconds=60
runs=""
seed=1
while [[ $# -gt 0 && "$1" == --* ]]; do
  case "$1" in
    --runs=*) runs="${1#--runs=}" ;;
    --seed=*) seed="${1#--seed=}" ;;
    *) echo "fuzz.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [[ -n "${runs}" && ! "${runs}" =~ ^[1-9][0-9]*$ || ! "${seed}" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: --runs and --seed take a positive integer" >&2
  exit 2
fi
[[ -n "${runs}" ]] && seconds=600
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then
  seconds="$1"
  shift
fi
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${TARGETS[@]}")
for target in "${targets[@]}"; do
  if [[ ! " ${TARGETS[*]} " =~ " ${target} " ]]; then
    echo "fuzz.sh: unknown target '${target}' (targets: ${TARGETS[*]})" >&2
    usage >&2
    exit 2
  fi
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build-fuzz"
work="${build}/fuzz"

if [[ ! -f "${build}/build.ninja" ]]; then
  CC=clang CXX=clang++ cmake -S "${root}" -B "${build}" -G Ninja \
    -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_FUZZ=ON
fi
cmake --build "${build}" --target kiln_fuzzers -j "${KILN_JOBS:-2}"

failed=()
for target in "${targets[@]}"; do
  corpus="${work}/corpus/${target}"
  artifacts="${work}/artifacts/${target}"
  log="${work}/logs/${target}.log"
  budget=("-max_total_time=${seconds}")
  if [[ -n "${runs}" ]]; then
    corpus="${work}/corpus/${target}.runs"
    rm -rf "${corpus}"
    budget+=("-runs=${runs}" "-seed=${seed}")
  fi
  mkdir -p "${corpus}" "${artifacts}" "$(dirname "${log}")"
  cp "${root}/tests/fuzz/corpus/${target}"/seed-* "${corpus}/"
  dict=()
  [[ -f "${root}/tests/fuzz/${target}.dict" ]] && dict=("-dict=${root}/tests/fuzz/${target}.dict")
  marker="$(mktemp)"
  if [[ -n "${runs}" ]]; then
    echo "fuzz.sh: ${target}: ${runs} runs, seed ${seed} (at most ${seconds} s)" \
      "from $(find "${corpus}" -type f | wc -l) seeds"
  else
    echo "fuzz.sh: ${target}: ${seconds} s from $(find "${corpus}" -type f | wc -l) inputs"
  fi
  status=0
  "${build}/tests/fuzz/${target}_fuzz" "${budget[@]}" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" -artifact_prefix="${artifacts}/" \
    "${corpus}" > "${log}" 2>&1 || status=$?
  [[ -n "${runs}" ]] && rm -rf "${corpus}"
  stats="$(awk '/stat::number_of_executed_units/ {n=$2} /stat::average_exec_per_sec/ {r=$2}
                END {if (n != "") printf "%s runs, %s/s", n, r}' "${log}")"
  if [[ ${status} -eq 0 ]]; then
    echo "fuzz.sh: ${target}: no crash (${stats})"
  else
    failed+=("${target}")
    tail -n 40 "${log}" >&2
    echo "fuzz.sh: ${target}: CRASHED (exit ${status}); log ${log}" >&2
    find "${artifacts}" -type f -newer "${marker}" -printf '  input saved as %p\n' >&2
  fi
  rm -f "${marker}"
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: crashed: ${failed[*]}" >&2
  exit 1
fi
if [[ -n "${runs}" ]]; then
  echo "fuzz.sh: no crash in ${runs} runs (seed ${seed}) per target (${targets[*]})"
else
  echo "fuzz.sh: no crash in ${seconds} s per target (${targets[*]})"
fi
