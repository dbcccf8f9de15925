#!/usr/bin/env bash
# Measures kiln-server's startup and memory on one model (default resnet50): time from start to
# "ready" (the port open, health SERVING) and the total PSS of the process tree, for several
# worker counts, then the time from a worker's kill -9 to its replacement being warm.
# Usage: scripts/measure_serve.sh [MODEL] [WORKER COUNTS...]     e.g. scripts/measure_serve.sh resnet50 1 2 4
# Needs a built tree (scripts/build.sh) and the demo models (scripts/make_models.py).
set -euo pipefail
cd "$(dirname "$0")/.."

model=${1:-resnet50}
shift || true
if [ $# -gt 0 ]; then counts=("$@"); else counts=(1 2 4); fi
server=${KILN_BUILD_DIR:-build}/server/kiln-server
[ -x "$server" ] || { echo "measure_serve: build first (scripts/build.sh)" >&2; exit 1; }
[ -d "models/$model/1" ] && grep -qx 'backend: "pytorch"' "models/$model/config.pbtxt" 2>/dev/null ||
  { echo "measure_serve: no models/$model, or in kiln's old form (scripts/make_models.py)" >&2; exit 1; }

work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 -- "-$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# A repository holding only $model, its files linked from models/.
mkdir -p "$work/repo/$model/1"
cp "models/$model/config.pbtxt" "$work/repo/$model/"
if [ -f "models/$model/kiln.pbtxt" ]; then cp "models/$model/kiln.pbtxt" "$work/repo/$model/"; fi
for f in "models/$model/1/"*; do ln -s "$PWD/$f" "$work/repo/$model/1/"; done

now_ms() { date +%s%3N; }
# wait_lines PATTERN COUNT FILE TIMEOUT_S: waits until FILE has COUNT lines matching PATTERN.
wait_lines() {
  local deadline=$(( $(date +%s) + $4 ))
  until [ "$(grep -c -- "$1" "$3")" -ge "$2" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "measure_serve: timed out waiting for '$1'" >&2; tail -5 "$3" >&2; exit 1; }
    sleep 0.05
  done
}
descendants() { local p; for p in $(cat /proc/"$1"/task/*/children 2>/dev/null); do echo "$p"; descendants "$p"; done; }
pss_kb() { local total=0 p v; for p in "$1" $(descendants "$1"); do v=$(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null || echo 0); total=$((total + ${v:-0})); done; echo "$total"; }

weights_mb=$(( $(stat -L -c %s "models/$model/1/model.safetensors") / 1000000 ))
echo "model $model: weights $weights_mb MB; $(nproc) cores"
printf '%-8s %-16s %-16s\n' workers "start->ready ms" "tree PSS MB"
port=$((20000 + RANDOM % 20000))
for n in "${counts[@]}"; do
  log="$work/server-$n.log"
  start=$(now_ms)
  setsid "$server" --model_repository="$work/repo" --host=127.0.0.1 --port="$port" \
    --workers="$n" --lock_dir="$work" --metrics_port=0 >"$log" 2>&1 &
  pid=$!
  wait_lines "ready: serving gRPC" 1 "$log" 300
  ready=$(( $(now_ms) - start ))
  printf '%-8s %-16s %-16s\n' "$n" "$ready" "$(( $(pss_kb "$pid") / 1000 ))"
  if [ "$n" = "${counts[-1]}" ]; then
    victim=$(descendants "$pid" | tail -1)
    killed=$(now_ms)
    kill -9 "$victim"
    wait_lines "): warm in" $(( n + 1 )) "$log" 120  # one more warm worker than at start
    echo "respawn: kill -9 of worker pid $victim -> replacement warm in $(( $(now_ms) - killed )) ms"
  fi
  kill -TERM "$pid"; wait "$pid" || true; pid=""
done
