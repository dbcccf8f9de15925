#!/usr/bin/env bash
# Runs kiln's benchmark suite on the demo models and writes BENCHMARKS.md: every row is
# measured in this one run, kiln next to its baseline modes (--warmup=off, --share_weights=off),
# with the command that produced it. Bounded: about 10 minutes on 2 cores.
#
# Usage: scripts/bench.sh [--quick]   (--quick: 1 repeat and short load runs, for a smoke test)
# Results: BENCHMARKS.md, and the raw JSON of every command in bench-results/.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1
repeat=3; load_s=15; capacity_s=10
[ $quick = 1 ] && { repeat=1; load_s=3; capacity_s=3; }

start=$(date +%s)
step() { echo "== bench.sh: $* ($(( $(date +%s) - start ))s)" >&2; }

step "set up and build"
scripts/setup.sh >/dev/null
scripts/build.sh >/dev/null
/usr/bin/python3 scripts/make_models.py --out models >/dev/null

build=${KILN_BUILD_DIR:-build}
bench="$build/bench/kiln-bench"
forward="$build/bench/kiln-forward-bench"
server="$build/server/kiln-server"
out=bench-results
rm -rf "$out"; mkdir -p "$out"
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -9 -- "-$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A repository holding only model $1 (files linked from models/), kept with the results so that
# every recorded command can be run again.
repo_of() {
  local dir="$out/repo-$1"
  if [ ! -d "$dir" ]; then
    mkdir -p "$dir/$1/1"
    cp "models/$1/config.pbtxt" "$dir/$1/"
    ln -s "$PWD/models/$1/1/"* "$dir/$1/1/"
  fi
  echo "$dir"
}

# run NAME COMMAND...: runs a command, records it for the report, keeps its output.
run() {
  local name=$1; shift
  echo "$*" > "$out/$name.cmd"
  "$@" > "$out/$name.log" 2>&1 || { echo "bench.sh: '$*' failed:" >&2; tail -20 "$out/$name.log" >&2; exit 1; }
}

# start_server MODEL WORKERS: kiln-server on a free port in the background; sets $port.
start_server() {
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  setsid "$server" --model_repository="$(repo_of "$1")" --host=127.0.0.1 --port="$port" \
    --workers="$2" --lock_dir="$work" > "$out/server-$1.log" 2>&1 &
  server_pid=$!
  local deadline=$(( $(date +%s) + 300 ))
  until "$bench" health --addr="127.0.0.1:$port" > /dev/null 2>&1; do
    kill -0 "$server_pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ] ||
      { echo "bench.sh: kiln-server did not become SERVING:" >&2; tail -5 "$out/server-$1.log" >&2; exit 1; }
    sleep 0.2
  done
}
stop_server() { kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""; }

step "1/4 time to SERVING and memory: resnet50, 1/2/4 workers, sharing on and off"
for workers in 1 2 4; do
  for share in on off; do
    run "coldstart-resnet50-w$workers-share-$share" "$bench" coldstart \
      --model_repository="$(repo_of resnet50)" --model=resnet50 --workers=$workers \
      --share_weights=$share --repeat=$repeat --steady_requests=10 \
      --json="$out/coldstart-resnet50-w$workers-share-$share.json"
  done
done

step "2/4 first request vs steady: mlp, resnet18 and textcls, warmup on and off"
for model in mlp resnet18 textcls; do
  for warmup in on off; do
    run "coldstart-$model-warmup-$warmup" "$bench" coldstart \
      --model_repository="$(repo_of $model)" --model=$model --workers=2 --warmup=$warmup \
      --repeat=$repeat --steady_requests=30 --json="$out/coldstart-$model-warmup-$warmup.json"
  done
done

step "3/4 open-loop latency at 50/70/90 % of capacity: mlp and resnet18"
for model in mlp resnet18; do
  start_server $model 2
  run "capacity-$model" "$bench" load --addr="127.0.0.1:$port" --model=$model --mode=closed \
    --concurrency=4 --duration_s=$capacity_s --warmup_requests=20 --json="$out/capacity-$model.json"
  capacity=$(/usr/bin/python3 -c "import json; print(json.load(open('$out/capacity-$model.json'))['throughput_rps'])")
  for pct in 50 70 90; do
    rate=$(/usr/bin/python3 -c "print(round($capacity * $pct / 100, 2))")
    run "open-$model-$pct" "$bench" load --addr="127.0.0.1:$port" --model=$model --mode=open \
      --arrival=poisson --rate=$rate --duration_s=$load_s --json="$out/open-$model-$pct.json"
  done
  stop_server
done

step "4/4 per-request overhead: mlp batch 1, gRPC round trip vs in-process forward"
start_server mlp 1
run "roundtrip-mlp" "$bench" load --addr="127.0.0.1:$port" --model=mlp --mode=closed \
  --concurrency=1 --duration_s=$load_s --warmup_requests=100 --json="$out/roundtrip-mlp.json"
threads=$(grep -o '[0-9]* thread(s)' "$out/server-mlp.log" | head -1 | cut -d' ' -f1)
stop_server
run "forward-mlp" "$forward" --model=mlp --batch=1 --threads="${threads:-1}" --warmup_calls=100 \
  --calls=2000 --json="$out/forward-mlp.json"

step "write BENCHMARKS.md"
/usr/bin/python3 scripts/bench_report.py "$out" > BENCHMARKS.md
step "done: BENCHMARKS.md"
