#!/usr/bin/env bash
# A soak under faults: kiln-server serving mlp, resnet18 and textcls under open-loop load at a
# share of its capacity for MINUTES, with a worker SIGKILLed every --kill_every_s and one reload
# (SIGHUP after a new version of mlp appears). Reports requests and errors by gRPC code per model,
# requests that never got an answer, and the process tree's PSS each minute after the reload.
#
# Capacity: each model alone, closed loop with one request in flight on its one worker
# (kiln-bench load --mode=closed); the soak then sends each model --load x its capacity / 3
# (Poisson arrivals), so that the three together keep the machine at about --load of what it
# serves.
#
# Passes (exit 0) when: the only errors are UNAVAILABLE (a request on a killed worker), at most
# --max_unavailable_per_kill per kill; no request went unanswered (NO_RESPONSE); the PSS grew by
# at most --max_pss_growth_pct from the first sample after the reload to the last; and the server
# drains and exits 0 on SIGTERM at the end.
# Writes <out>/soak-summary.md (printed too), <out>/soak-pss.csv, <out>/soak-<model>.json and
# <out>/soak-server.log.
#
# Usage: scripts/soak.sh [MINUTES] [--out=DIR] [--load=0.7] [--kill_every_s=30]
#                        [--max_unavailable_per_kill=5] [--max_pss_growth_pct=2]
#   MINUTES defaults to 20 (at least 5: the reload is at minute 2, PSS is compared from minute 3).
#   Build first (scripts/build.sh) and make the demo models (scripts/make_models.py).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

minutes=20; out=bench-results; load=0.7; kill_every_s=30; max_unavailable_per_kill=5
max_pss_growth_pct=2
for arg in "$@"; do
  case $arg in
    --out=*) out=${arg#--out=} ;;
    --load=*) load=${arg#--load=} ;;
    --kill_every_s=*) kill_every_s=${arg#--kill_every_s=} ;;
    --max_unavailable_per_kill=*) max_unavailable_per_kill=${arg#--max_unavailable_per_kill=} ;;
    --max_pss_growth_pct=*) max_pss_growth_pct=${arg#--max_pss_growth_pct=} ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    [0-9]*) minutes=$arg ;;
    *) echo "soak.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$minutes" -ge 5 ] || { echo "soak.sh: MINUTES must be at least 5" >&2; exit 2; }
build="${KILN_BUILD_DIR:-build}"
bench="$build/bench/kiln-bench"; server_bin="$build/server/kiln-server"
for f in "$bench" "$server_bin"; do
  [ -x "$f" ] || { echo "soak.sh: $f is missing: run scripts/build.sh first" >&2; exit 1; }
done
models=(mlp resnet18 textcls)
for m in "${models[@]}"; do
  grep -qx 'backend: "pytorch"' "models/$m/config.pbtxt" 2>/dev/null ||
    { echo "soak.sh: models/$m missing or in kiln's old form: run scripts/make_models.py" >&2; exit 1; }
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

work=$(mktemp -d /tmp/kiln-soak.XXXXXX)
server_pid=""; load_pids=()
cleanup() {
  for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "soak.sh: [$(date +%H:%M:%S)] $*"; }

# The repository: each demo model's config.pbtxt and kiln.pbtxt, and version 1 (links to the
# demo files).
repo="$work/repository"
link_version() {  # link_version MODEL VERSION
  mkdir -p "$repo/$1/$2"
  for f in "$ROOT/models/$1/1/"*; do ln -s "$f" "$repo/$1/$2/"; done
}
for m in "${models[@]}"; do
  mkdir -p "$repo/$m"; cp "models/$m/config.pbtxt" "$repo/$m/"; link_version "$m" 1
  if [ -f "models/$m/kiln.pbtxt" ]; then cp "models/$m/kiln.pbtxt" "$repo/$m/"; fi
done

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
addr="127.0.0.1:$port"
mkdir -m 0700 "$work/lock"
"$server_bin" --model_repository="$repo" --port="$port" --metrics_port=0 --workers=1 \
  --lock_dir="$work/lock" > "$out/soak-server.log" 2>&1 &
server_pid=$!
log "kiln-server pid $server_pid on $addr; waiting for SERVING"
for _ in $(seq 600); do
  "$bench" health --addr="$addr" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { echo "soak.sh: kiln-server exited; see $out/soak-server.log" >&2; exit 1; }
  sleep 1
done
"$bench" health --addr="$addr" >/dev/null || { echo "soak.sh: not SERVING after 600 s" >&2; exit 1; }

# Capacity, one model at a time.
declare -A rate
for m in "${models[@]}"; do
  "$bench" load --addr="$addr" --model="$m" --mode=closed --concurrency=1 --duration_s=5 \
    --warmup_requests=5 --json="$work/capacity-$m.json" > /dev/null 2>&1
  rate[$m]=$(/usr/bin/python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['throughput_rps'] * $load / 3, 2))" "$work/capacity-$m.json")
  log "$m: capacity $(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['throughput_rps'])" "$work/capacity-$m.json") requests/s alone; soak rate ${rate[$m]}/s"
done

duration_s=$((minutes * 60))
for m in "${models[@]}"; do
  "$bench" load --addr="$addr" --model="$m" --mode=open --arrival=poisson --rate="${rate[$m]}" \
    --duration_s="$duration_s" --timeout_ms=30000 --seed=7 --json="$out/soak-$m.json" \
    > "$work/load-$m.log" 2>&1 &
  load_pids+=($!)
done
log "load started for $minutes min"

# The process tree's PSS in kB: the master and every descendant.
tree_pss() {
  /usr/bin/python3 - "$server_pid" <<'PY'
import os, sys
root = int(sys.argv[1])
children = {}
for entry in os.listdir('/proc'):
    if not entry.isdigit():
        continue
    try:
        with open(f'/proc/{entry}/stat') as f:
            ppid = int(f.read().rsplit(')', 1)[1].split()[1])
    except OSError:
        continue
    children.setdefault(ppid, []).append(int(entry))
tree, todo = [], [root]
while todo:
    pid = todo.pop()
    tree.append(pid)
    todo.extend(children.get(pid, []))
total = 0
for pid in tree:
    try:
        with open(f'/proc/{pid}/smaps_rollup') as f:
            total += next(int(line.split()[1]) for line in f if line.startswith('Pss:'))
    except (OSError, StopIteration):
        pass
print(total, len(tree))
PY
}

# Worker pids of model $1 from the warmup report.
worker_pids() {
  "$bench" warmup --addr="$addr" --model="$1" --json 2>/dev/null | /usr/bin/python3 -c '
import json, sys
report = json.load(sys.stdin)
for model in report.get("models", []):
    for worker in model.get("workers", []):
        if worker.get("pid"):
            print(worker["pid"])'
}

start=$(date +%s); kills=0; next_kill=$kill_every_s; reloaded=0; next_sample=75
echo "minute,pss_kb,processes,after_reload" > "$out/soak-pss.csv"
while :; do
  now=$(( $(date +%s) - start ))
  [ "$now" -ge "$duration_s" ] && break
  if [ "$now" -ge "$next_kill" ]; then
    m=${models[$((kills % ${#models[@]}))]}
    pid=$(worker_pids "$m" | head -1)
    if [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; then
      kills=$((kills + 1)); log "killed $m worker $pid (kill $kills)"
    else
      log "no $m worker to kill at ${now}s"
    fi
    next_kill=$((next_kill + kill_every_s))
  fi
  if [ "$reloaded" = 0 ] && [ "$now" -ge 120 ]; then
    link_version mlp 2
    kill -HUP "$server_pid"; reloaded=1; log "mlp version 2 added; SIGHUP"
  fi
  if [ "$now" -ge "$next_sample" ]; then
    read -r pss procs < <(tree_pss)
    after=$([ "$reloaded" = 1 ] && [ "$now" -ge 180 ] && echo 1 || echo 0)
    echo "$(( (now + 30) / 60 )),$pss,$procs,$after" >> "$out/soak-pss.csv"
    log "PSS $((pss / 1024)) MB over $procs processes"
    next_sample=$((next_sample + 60))
  fi
  kill -0 "$server_pid" 2>/dev/null || { echo "soak.sh: kiln-server died; see $out/soak-server.log" >&2; exit 1; }
  sleep 1
done
log "waiting for the load to finish"
for p in "${load_pids[@]}"; do wait "$p" || true; done
load_pids=()
kill -TERM "$server_pid"
server_exit=0; wait "$server_pid" || server_exit=$?
server_pid=""
log "kiln-server exited $server_exit after SIGTERM"

/usr/bin/python3 - "$out" "$kills" "$max_unavailable_per_kill" "$max_pss_growth_pct" "$minutes" \
  "$load" "$kill_every_s" "$server_exit" "${models[@]}" <<'PY'
import csv, json, sys
out, kills, per_kill, max_growth, minutes, load, every, server_exit = sys.argv[1:9]
models = sys.argv[9:]
kills, per_kill, max_growth = int(kills), float(per_kill), float(max_growth)
lines, failures = [], []
lines.append(f"soak: {minutes} min, load {load} of capacity, a worker SIGKILLed every {every} s "
             f"({kills} kills), mlp reloaded once (SIGHUP at 2 min)\n")
lines.append("| model | rate/s | sent | ok | errors by code | p50 ms | p99 ms |")
lines.append("|---|---|---|---|---|---|---|")
unavailable = hung = 0
for m in models:
    s = json.load(open(f"{out}/soak-{m}.json"))
    errors = s.get("errors", {})
    text = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"
    lat = s["latency_ms"]
    lines.append(f"| {m} | {s['target_rate']} | {s['sent']} | {s['ok']} | {text} | "
                 f"{lat['p50']} | {lat['p99']} |")
    hung += errors.get("NO_RESPONSE", 0)
    for code, count in errors.items():
        if code == "UNAVAILABLE":
            unavailable += count
        else:
            failures.append(f"{m}: {count} x {code}")
lines.append("")
limit = per_kill * max(kills, 1)
lines.append(f"UNAVAILABLE: {unavailable} over {kills} kills "
             f"({unavailable / max(kills, 1):.2f} per kill; at most {per_kill:g} allowed)")
if unavailable > limit:
    failures.append(f"{unavailable} UNAVAILABLE > {limit:g}")
rows = list(csv.DictReader(open(f"{out}/soak-pss.csv")))
after = [r for r in rows if r["after_reload"] == "1"]
lines.append("")
lines.append("PSS of the process tree, MB, each minute: " +
             " ".join(f"{int(r['pss_kb']) / 1024:.0f}" + ("*" if r["after_reload"] == "1" else "")
                      for r in rows) + " (* after the reload)")
if len(after) >= 2:
    first, last = int(after[0]["pss_kb"]), int(after[-1]["pss_kb"])
    growth = 100.0 * (last - first) / first
    lines.append(f"PSS growth after the reload: {first / 1024:.1f} -> {last / 1024:.1f} MB "
                 f"({growth:+.2f} %; at most {max_growth:g} % allowed)")
    if growth > max_growth:
        failures.append(f"PSS grew {growth:.2f} %")
else:
    failures.append("fewer than 2 PSS samples after the reload")
lines.append(f"requests never answered (NO_RESPONSE): {hung}")
lines.append(f"kiln-server's exit status after SIGTERM: {server_exit}")
if server_exit != "0":
    failures.append(f"kiln-server exited {server_exit}")
lines.append("")
lines.append("result: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
text = "\n".join(lines) + "\n"
open(f"{out}/soak-summary.md", "w").write(text)
print(text)
sys.exit(1 if failures else 0)
PY
