#!/usr/bin/env bash
# Runs kiln's benchmark suite on the demo models and writes BENCHMARKS.md: every row is
# measured in this one run, kiln next to its baseline modes (--warmup=off, --share_weights=off,
# and the old CPU settings), with the command that produced it. Bounded: about 40-50 minutes on 2
# cores. The CPU section makes a cgroup with a CPU quota, and the elastic section one with a
# memory limit (root and a writable cgroup file system; skipped, and said so in the report, where
# it cannot), and the CPU section starts busy loops, killed by pid.
#
# Usage: scripts/bench.sh [--quick] [--steps=LIST] [--no-build]
#   --quick       1 repeat and short load runs, for a smoke test.
#   --steps=LIST  only the numbered steps in LIST (comma-separated, e.g. --steps=13 or
#                 --steps=2,13): the other steps' results already in bench-results/ are kept, and
#                 BENCHMARKS.md is still written from the whole folder (a section whose results
#                 are missing says "not measured"), so one section can be measured again.
#   --no-build    skip scripts/setup.sh and scripts/build.sh: the binaries already in
#                 $KILN_BUILD_DIR (default build/) are used as they are.
# KILN_BENCH_NAIVE_MODELS (default "resnet50 resnet18 mlp textcls"): the models of step 14, kiln
# against the naive Python server (scripts/naive_server.py), e.g. KILN_BENCH_NAIVE_MODELS=mlp.
# Results: BENCHMARKS.md, and the raw JSON of every command in bench-results/.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0; steps=""; build_first=1
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    --steps=*) steps=${arg#--steps=} ;;
    --no-build) build_first=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "bench.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
if [ -n "$steps" ]; then
  [[ $steps =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "bench.sh: --steps takes numbers 1-14 separated by commas, not '$steps'" >&2; exit 2; }
  for n in ${steps//,/ }; do
    [ "$n" -ge 1 ] && [ "$n" -le 14 ] || { echo "bench.sh: no step $n (the steps are 1-14)" >&2; exit 2; }
  done
fi
# want N: whether step N runs (every step without --steps).
want() { [ -z "$steps" ] || [[ ",$steps," == *",$1,"* ]]; }
repeat=3; load_s=15; capacity_s=10; scaleout_s=30; wait_calls=40; cpu_steady=100
elastic_s=20; elastic_event_s=8; reload_before_s=8; reload_after_s=8; scrape_rounds=10
[ $quick = 1 ] && { repeat=1; load_s=3; capacity_s=3; scaleout_s=14; wait_calls=10; cpu_steady=20;
                    elastic_s=10; elastic_event_s=4; reload_before_s=4; reload_after_s=3;
                    scrape_rounds=1; }

start=$(date +%s)
step() { echo "== bench.sh: $* ($(( $(date +%s) - start ))s)" >&2; }

if [ $build_first = 1 ]; then
  step "set up and build"
  scripts/setup.sh >/dev/null
  scripts/build.sh >/dev/null
fi
/usr/bin/python3 scripts/make_models.py --out models >/dev/null

build=${KILN_BUILD_DIR:-build}
bench="$build/bench/kiln-bench"
forward="$build/bench/kiln-forward-bench"
server="$build/server/kiln-server"
floor="$build/bench/kiln-floor-server"
needed=("$bench" "$server")
{ want 4 || want 8 || want 12; } && needed+=("$forward")
want 13 && needed+=("$floor")
for binary in "${needed[@]}"; do
  [ -x "$binary" ] || { echo "bench.sh: $binary is missing: run scripts/build.sh" >&2; exit 1; }
done
naive_server=scripts/naive_server.py
naive_models=${KILN_BENCH_NAIVE_MODELS:-resnet50 resnet18 mlp textcls}
if want 14 && ! /usr/bin/python3 -c 'import grpc, google.protobuf, sentencepiece, torch' 2>/dev/null; then
  echo "bench.sh: step 14's naive server needs python3-grpcio, python3-protobuf and python3-sentencepiece: run scripts/setup.sh" >&2
  exit 1
fi
out=bench-results
if [ -z "$steps" ]; then
  rm -rf "$out"; mkdir -p "$out"
else
  # The other steps' results stay; the report says which steps were measured again, and when.
  mkdir -p "$out"
  echo "--steps=$steps$([ $quick = 1 ] && echo " --quick") on $(date -u '+%Y-%m-%d %H:%M UTC')" \
    >> "$out/partial-runs.txt"
fi
work=$(mktemp -d)
server_pid=""
spinners=()
quota_cgroup=""
mem_cgroup=""
cleanup() {
  [ -n "$server_pid" ] && kill -9 -- "-$server_pid" 2>/dev/null || true
  stop_spinners
  [ -n "$quota_cgroup" ] && rmdir "$quota_cgroup" 2>/dev/null || true
  [ -n "$mem_cgroup" ] && remove_cgroup "$mem_cgroup" || true
  rm -rf "$work"
}
trap cleanup EXIT

# repo_of MODEL [auto|old|triton|batched]: a repository holding only MODEL (files linked from models/),
# kept with the results so that every recorded command can be run again. Its config.pbtxt
# (Triton's form) and kiln.pbtxt are the demo's; with "auto" a config.pbtxt whose instance_group
# is automatic, with "old" kiln's old default on this machine (1 worker of $(nproc) intra-op
# threads: count 1 and the PyTorch backend's INTRA_OP_THREAD_COUNT parameter), with "triton" the
# repository as a Triton user brings it: config.pbtxt without instance_group and no kiln.pbtxt,
# with "batched" the demo's with Triton's dynamic batcher on (`dynamic_batching { }`).
# Built afresh at its first use in each bench run (a stamp holds the run), so that a partial run
# (--steps) never serves an earlier run's copies of the configs.
bench_run="$$.$(date +%s)"
repo_of() {
  local dir="$out/repo-$1${2:+-$2}"
  if [ "$(cat "$dir/.bench-run" 2>/dev/null)" != "$bench_run" ]; then
    rm -rf "$dir"
    mkdir -p "$dir/$1/1"
    case "${2:-}" in
      auto|triton) grep -v '^instance_group' "models/$1/config.pbtxt" > "$dir/$1/config.pbtxt" ;;
      batched) { cat "models/$1/config.pbtxt"; echo "dynamic_batching { }"; } \
                 > "$dir/$1/config.pbtxt" ;;
      old) { grep -v '^instance_group' "models/$1/config.pbtxt"
             echo "instance_group [ { count: 1 kind: KIND_CPU } ]"
             echo "parameters { key: \"INTRA_OP_THREAD_COUNT\" value { string_value: \"$(nproc)\" } }"
           } > "$dir/$1/config.pbtxt" ;;
      *) cp "models/$1/config.pbtxt" "$dir/$1/" ;;
    esac
    if [ -f "models/$1/kiln.pbtxt" ] && [ "${2:-}" != triton ]; then
      cp "models/$1/kiln.pbtxt" "$dir/$1/"
    fi
    ln -s "$PWD/models/$1/1/"* "$dir/$1/1/"
    echo "$bench_run" > "$dir/.bench-run"
  fi
  echo "$dir"
}

# run NAME COMMAND...: runs a command, records it for the report, keeps its output.
run() {
  local name=$1; shift
  echo "$*" > "$out/$name.cmd"
  "$@" > "$out/$name.log" 2>&1 || { echo "bench.sh: '$*' failed:" >&2; tail -20 "$out/$name.log" >&2; exit 1; }
}

# run_may_fail NAME COMMAND...: as run, but a failure (a baseline that never becomes SERVING, say)
# is a result: its last lines go to NAME.failed for the report.
run_may_fail() {
  local name=$1; shift
  echo "$*" > "$out/$name.cmd"
  rm -f "$out/$name.failed"  # from an earlier run of the step (--steps)
  "$@" > "$out/$name.log" 2>&1 || grep -v '^\[' "$out/$name.log" | tail -4 > "$out/$name.failed"
}

# Busy loops at normal priority, as noisy neighbours; stop_spinners kills them by pid.
start_spinners() {
  for _ in $(seq 1 "$1"); do bash -c 'while :; do :; done' & spinners+=($!); done
}
stop_spinners() {
  for pid in "${spinners[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  spinners=()
}

# make_quota_cgroup CPUS: a cgroup allowing CPUS CPUs of time (CFS quota), in this process's cpu
# hierarchy (cgroup v1, or v2 with the cpu controller); sets $quota_cgroup, or writes why not to
# $out/cpu-quota.skipped.
make_quota_cgroup() {
  local quota=$(( $1 * 100000 )) line path dir
  line=$(grep -E '^[0-9]+:([^:]*,)?cpu(,[^:]*)?:' /proc/self/cgroup | head -1 || true)
  if [ -n "$line" ]; then
    path=${line#*:*:}; dir="/sys/fs/cgroup/$(echo "$line" | cut -d: -f2)$path"
    [ -d "$dir" ] || dir="/sys/fs/cgroup/cpu$path"
    dir="${dir%/}/kiln-bench-$$"
    if mkdir "$dir" 2>/dev/null && echo 100000 > "$dir/cpu.cfs_period_us" &&
       echo "$quota" > "$dir/cpu.cfs_quota_us"; then quota_cgroup=$dir; return; fi
  else
    path=$(sed -n 's/^0:://p' /proc/self/cgroup); dir="/sys/fs/cgroup${path%/}/kiln-bench-$$"
    if mkdir "$dir" 2>/dev/null && [ -f "$dir/cpu.max" ] && echo "$quota 100000" > "$dir/cpu.max"; then
      quota_cgroup=$dir; return
    fi
  fi
  rmdir "$dir" 2>/dev/null || true
  echo "cannot create a cgroup with a CPU quota at $dir (needs root and a writable cgroup file system)" \
    > "$out/cpu-quota.skipped"
}

# make_memory_cgroup BYTES: a cgroup whose memory limit is BYTES (and swappiness 0, or no swap on
# v2, where that file exists), in this process's memory hierarchy (cgroup v1, or v2 with the memory controller);
# sets $mem_cgroup, or writes why not to $out/elastic-mem.skipped.
make_memory_cgroup() {
  local limit=$1 line path dir
  line=$(grep -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' /proc/self/cgroup | head -1 || true)
  if [ -n "$line" ]; then
    path=${line#*:*:}; dir="/sys/fs/cgroup/$(echo "$line" | cut -d: -f2)$path"
    [ -d "$dir" ] || dir="/sys/fs/cgroup/memory$path"
    dir="${dir%/}/kiln-bench-mem-$$"
    if mkdir "$dir" 2>/dev/null && echo "$limit" > "$dir/memory.limit_in_bytes"; then
      [ -f "$dir/memory.swappiness" ] && { echo 0 > "$dir/memory.swappiness"; } 2>/dev/null || true
      mem_cgroup=$dir; return
    fi
  else
    path=$(sed -n 's/^0:://p' /proc/self/cgroup); dir="/sys/fs/cgroup${path%/}/kiln-bench-mem-$$"
    if mkdir "$dir" 2>/dev/null && [ -f "$dir/memory.max" ] && echo "$limit" > "$dir/memory.max"; then
      [ -f "$dir/memory.swap.max" ] && { echo 0 > "$dir/memory.swap.max"; } 2>/dev/null || true
      mem_cgroup=$dir; return
    fi
  fi
  rmdir "$dir" 2>/dev/null || true
  echo "cannot create a cgroup with a memory limit at $dir (needs root and a writable cgroup file system)" \
    > "$out/elastic-mem.skipped"
}

# save_memory_stats CGROUP FILE: what the kernel counted in the memory cgroup CGROUP since it was
# made, as "name value" lines: max_usage_bytes (v1 memory.max_usage_in_bytes, v2 memory.peak),
# failcnt (v1 memory.failcnt: times the limit was hit; v2 the "max" of memory.events) and oom_kill
# (its line in v1 memory.oom_control, v2 memory.events), for the report.
save_memory_stats() {
  local dir=$1
  if [ -f "$dir/memory.max_usage_in_bytes" ]; then
    echo "max_usage_bytes $(cat "$dir/memory.max_usage_in_bytes")"
    echo "failcnt $(cat "$dir/memory.failcnt")"
    grep '^oom_kill ' "$dir/memory.oom_control" || echo "oom_kill unknown (no oom_kill line in memory.oom_control)"
  else
    [ -f "$dir/memory.peak" ] && echo "max_usage_bytes $(cat "$dir/memory.peak")"
    echo "failcnt $(sed -n 's/^max //p' "$dir/memory.events")"
    grep '^oom_kill ' "$dir/memory.events" || echo "oom_kill unknown (no oom_kill line in memory.events)"
  fi > "$2"
}

# remove_cgroup DIR: rmdir once its last process is gone (a killed server's take a moment to go).
remove_cgroup() {
  for _ in $(seq 1 25); do rmdir "$1" 2>/dev/null && return 0; sleep 0.2; done
  echo "bench.sh: could not remove the cgroup $1" >&2
}

# save_plan FILE LOG...: the first thread plan the server logs ("2 CPUs: resnet50 2 workers ...
# = 2 threads") into FILE, for the report.
save_plan() {
  local file=$1; shift
  grep -ho 'threads: [0-9]* CPUs\?: .* = [0-9]* threads\?' "$@" 2>/dev/null | head -1 |
    sed 's/^threads: //' > "$file" || true
}

# The old CPU settings beside the repository: libgomp's default spinning (GOMP_SPINCOUNT=300000
# is its default; kiln leaves an operator's setting alone) and warming at normal priority.
old_env=(env GOMP_SPINCOUNT=300000)
old_args="--warmup_priority=normal"

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_serving NAME: waits until the server $server_pid on $port says SERVING; returns 1 (the tail
# of server-NAME.log on stderr) when it exits first or is not SERVING within 300 s.
wait_serving() {
  local deadline=$(( $(date +%s) + 300 ))
  until "$bench" health --addr="127.0.0.1:$port" > /dev/null 2>&1; do
    if ! kill -0 "$server_pid" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
      echo "bench.sh: server-$1 did not become SERVING:" >&2; tail -5 "$out/server-$1.log" >&2
      return 1
    fi
    sleep 0.2
  done
}

# start_server NAME REPO [FLAGS...]: kiln-server on REPO and a free port in the background, its
# log in server-NAME.log; sets $port.
start_server() {
  local name=$1 repo=$2; shift 2
  port=$(free_port)
  setsid "$server" --model_repository="$repo" --host=127.0.0.1 --port="$port" \
    --lock_dir="$work" --metrics_port=0 "$@" > "$out/server-$name.log" 2>&1 &
  server_pid=$!
  wait_serving "$name" || exit 1
}

# start_server_in_cgroup NAME CGROUP REPO [FLAGS...]: as start_server, but in the cgroup directory
# CGROUP: a shell writes its own pid to CGROUP/cgroup.procs, then execs kiln-server (same pid), so
# the server and everything it forks are charged there; it never runs outside it. Returns 1 when
# the server is not SERVING (the cgroup refused the write, say), the server stopped.
start_server_in_cgroup() {
  local name=$1 cgroup=$2 repo=$3; shift 3
  port=$(free_port)
  setsid sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$cgroup" \
    "$server" --model_repository="$repo" --host=127.0.0.1 --port="$port" --lock_dir="$work" \
    --metrics_port=0 "$@" \
    > "$out/server-$name.log" 2>&1 &
  server_pid=$!
  wait_serving "$name" && return 0
  kill -9 -- "-$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""
  return 1
}
stop_server() { kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""; }
# save_metrics NAME PORT: the /metrics of the server on metrics port PORT into
# $out/metrics-NAME.txt, for the report's counters (executions, inferences, cold shapes); the
# report says "not measured" when it could not be read.
save_metrics() {
  /usr/bin/python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$2/metrics', timeout=10).read().decode())" \
    > "$out/metrics-$1.txt" || rm -f "$out/metrics-$1.txt"
}

# start_floor NAME REPO: kiln-floor-server (every model of REPO answered with zeros, no model run:
# the floor the gRPC front allows) on a free port in the background, its command and log in
# server-NAME.cmd and .log; sets $port and $server_pid, so that stop_server stops it.
start_floor() {
  port=$(free_port)
  echo "$floor --model_repository=$2 --port=$port" > "$out/server-$1.cmd"
  setsid "$floor" --model_repository="$2" --port="$port" > "$out/server-$1.log" 2>&1 &
  server_pid=$!
  wait_serving "$1" || exit 1
}

if want 1; then
  step "1/14 time to SERVING and memory: resnet50, 1/2/4 workers, sharing on and off"
  for workers in 1 2 4; do
    for share in on off; do
      run "coldstart-resnet50-w$workers-share-$share" "$bench" coldstart \
        --model_repository="$(repo_of resnet50)" --model=resnet50 --workers=$workers \
        --share_weights=$share --repeat=$repeat --steady_requests=10 \
        --json="$out/coldstart-resnet50-w$workers-share-$share.json"
    done
  done
fi

if want 2; then
  step "2/14 first request vs steady: mlp, resnet18 and textcls, warmup on and off; Triton repositories"
  for model in mlp resnet18 textcls; do
    for warmup in on off; do
      run "coldstart-$model-warmup-$warmup" "$bench" coldstart \
        --model_repository="$(repo_of $model)" --model=$model --workers=2 --warmup=$warmup \
        --repeat=$repeat --steady_requests=30 --json="$out/coldstart-$model-warmup-$warmup.json"
    done
  done

  # The Triton repository a user brings, with no kiln settings at all (textcls needs kiln.pbtxt's
  # tokenizer for text, so it is left out): kiln's defaults alone must keep the first request warm.
  for model in mlp resnet18 resnet50; do
    run "coldstart-$model-triton" "$bench" coldstart \
      --model_repository="$(repo_of $model triton)" --model=$model --workers=0 \
      --repeat=$repeat --steady_requests=30 --json="$out/coldstart-$model-triton.json"
  done
fi

if want 3; then
  step "3/14 open-loop latency at 50/70/90 % of capacity: mlp and resnet18"
  for model in mlp resnet18; do
    start_server "$model" "$(repo_of "$model")" --workers=2
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
fi

if want 4; then
  step "4/14 per-request overhead: mlp batch 1, gRPC round trip vs in-process forward"
  start_server mlp "$(repo_of mlp)" --workers=1
  run "roundtrip-mlp" "$bench" load --addr="127.0.0.1:$port" --model=mlp --mode=closed \
    --concurrency=1 --duration_s=$load_s --warmup_requests=100 --json="$out/roundtrip-mlp.json"
  threads=$(grep -o '[0-9]* thread(s)' "$out/server-mlp.log" | head -1 | cut -d' ' -f1)
  stop_server
  run "forward-mlp" "$forward" --model=mlp --batch=1 --threads="${threads:-1}" --warmup_calls=100 \
    --calls=2000 --json="$out/forward-mlp.json"
fi

if want 5; then
  step "5/14 CPU sizing: resnet50 quiet, under a 1-CPU quota and beside two busy loops, automatic vs old"
  make_quota_cgroup 1
  for setting in auto old; do
    prefix=(); server_args=""
    [ "$setting" = old ] && { prefix=("${old_env[@]}"); server_args=$old_args; }
    for condition in quiet quota spinners; do
      name="cpu-resnet50-$setting-$condition"
      cgroup_flag=()
      if [ "$condition" = quota ]; then
        [ -n "$quota_cgroup" ] || continue
        cgroup_flag=(--cgroup="$quota_cgroup")
      fi
      [ "$condition" = spinners ] && start_spinners 2
      run_may_fail "$name" "${prefix[@]}" "$bench" coldstart \
        --model_repository="$(repo_of resnet50 "$setting")" --model=resnet50 --workers=0 \
        --server_args="$server_args" "${cgroup_flag[@]}" --repeat=1 --steady_requests=$cpu_steady \
        --timeout_s=300 --log_dir="$out/logs-$name" --json="$out/$name.json"
      stop_spinners
      save_plan "$out/$name.plan" "$out/logs-$name/"*.log
    done
  done
fi

if want 6; then
  step "6/14 scale-out: replica B starts beside replica A (resnet18 at 15 req/s), automatic vs old"
  for setting in auto old; do
    prefix=(); server_args=""
    [ "$setting" = old ] && { prefix=("${old_env[@]}"); server_args=$old_args; }
    run_may_fail "scaleout-resnet18-$setting" "${prefix[@]}" "$bench" scaleout \
      --model_repository="$(repo_of resnet18 "$setting")" --model=resnet18 --workers=0 \
      --server_args="$server_args" --rate=15 --duration_s=$scaleout_s --start_b_s=8 \
      --json="$out/scaleout-resnet18-$setting.json"
  done
fi

if want 7; then
  step "7/14 threads vs workers: resnet50, automatic (workers x 1 thread) vs 1 worker x all threads"
  for setting in auto old; do
    # Old CPU settings only for the thread count here: both wait passively, so that this compares
    # one request's latency and the throughput of the two shapes, not the spinning.
    start_server "threads-$setting" "$(repo_of resnet50 "$setting")"
    save_plan "$out/threads-$setting.plan" "$out/server-threads-$setting.log"
    for concurrency in 1 2; do
      run "threads-$setting-c$concurrency" "$bench" load --addr="127.0.0.1:$port" --model=resnet50 \
        --mode=closed --concurrency=$concurrency --duration_s=$capacity_s --warmup_requests=10 \
        --json="$out/threads-$setting-c$concurrency.json"
    done
    stop_server
  done
fi

if want 8; then
  step "8/14 OpenMP waiting: resnet50 with 2 intra-op threads in-process, quiet and beside two busy loops"
  for condition in quiet spinners; do
    [ "$condition" = spinners ] && start_spinners 2
    for wait in passive default spin1000; do
      case $wait in
        passive) wait_env=(env OMP_WAIT_POLICY=PASSIVE) ;;
        default) wait_env=(env GOMP_SPINCOUNT=300000) ;;  # libgomp's default, spelled out
        spin1000) wait_env=(env GOMP_SPINCOUNT=1000) ;;
      esac
      run "wait-$wait-$condition" "${wait_env[@]}" "$forward" --model=resnet50 --batch=1 --threads=2 \
        --warmup_calls=5 --calls=$wait_calls --json="$out/wait-$wait-$condition.json"
    done
    stop_spinners
  done
fi

if want 9; then
  step "9/14 elastic warm pool: time to SERVING, kill -9 and TTIN under load, a 900 MB memory cgroup"
  # a. Time to SERVING with 1 and 4 workers, warm template on (the default) and off.
  for workers in 1 4; do
    for template in on off; do
      name="elastic-coldstart-w$workers-template-$template"
      run_may_fail "$name" "$bench" coldstart --model_repository="$(repo_of resnet50)" \
        --model=resnet50 --workers=$workers --server_args="--warm_template=$template" \
        --repeat=$repeat --steady_requests=10 --json="$out/$name.json"
    done
  done
  # b. kill -9 of one of 4 resnet50 workers at a modest rate: time until its replacement is warm,
  # health throughout, the replacement's first request.
  for template in on off; do
    name="elastic-kill-template-$template"
    run_may_fail "$name" "$bench" elastic --model_repository="$(repo_of resnet50)" --model=resnet50 \
      --workers=4 --event=kill --rate=6 --duration_s=$elastic_s --event_s=$elastic_event_s \
      --server_args="--warm_template=$template" --log_dir="$out/logs-$name" --json="$out/$name.json"
  done
  # c. TTIN on resnet18: a server sized to 1 CPU (--cpus=1: one worker of one thread) on this
  # 2-CPU machine, at 70 % of that worker's capacity (closed loop, as in 3/9); TTIN adds a second
  # worker, which has the other CPU to itself.
  start_server elastic-resnet18-cpus1 "$(repo_of resnet18)" --workers=1 --cpus=1
  run "elastic-capacity-resnet18-cpus1" "$bench" load --addr="127.0.0.1:$port" --model=resnet18 \
    --mode=closed --concurrency=4 --duration_s=$capacity_s --warmup_requests=20 \
    --json="$out/elastic-capacity-resnet18-cpus1.json"
  stop_server
  capacity=$(/usr/bin/python3 -c "import json; print(json.load(open('$out/elastic-capacity-resnet18-cpus1.json'))['throughput_rps'])")
  rate=$(/usr/bin/python3 -c "print(round($capacity * 70 / 100, 2))")
  for template in on off; do
    name="elastic-ttin-template-$template"
    run_may_fail "$name" "$bench" elastic --model_repository="$(repo_of resnet18)" --model=resnet18 \
      --workers=1 --event=ttin --rate=$rate --duration_s=$elastic_s --event_s=$elastic_event_s \
      --server_args="--cpus=1 --warm_template=$template" --log_dir="$out/logs-$name" \
      --json="$out/$name.json"
  done
  # d. A 900 MB memory cgroup: 4 resnet50 workers start and serve in it, a scale past what fits is
  # refused (RESOURCE_EXHAUSTED, with the numbers), and the kernel never OOM-kills.
  make_memory_cgroup 900000000
  if [ -n "$mem_cgroup" ]; then
    run_may_fail "elastic-mem-coldstart" "$bench" coldstart --model_repository="$(repo_of resnet50)" \
      --model=resnet50 --workers=4 --cgroup="$mem_cgroup" --repeat=1 --steady_requests=10 \
      --log_dir="$out/logs-elastic-mem-coldstart" --json="$out/elastic-mem-coldstart.json"
    if start_server_in_cgroup elastic-mem "$mem_cgroup" "$(repo_of resnet50)" --workers=4; then
      # Refused is the expected outcome (exit 1): run_may_fail keeps the message in .failed.
      run_may_fail "elastic-mem-scale" "$bench" scale --addr="127.0.0.1:$port" --model=resnet50 \
        --workers=40
      run_may_fail "elastic-mem-health" "$bench" health --addr="127.0.0.1:$port" --service=resnet50
      echo "$bench warmup --addr=127.0.0.1:$port --model=resnet50 --json" > "$out/elastic-mem-warmup.cmd"
      "$bench" warmup --addr="127.0.0.1:$port" --model=resnet50 --json > "$out/elastic-mem-warmup.json" \
        2> "$out/elastic-mem-warmup.log" || rm -f "$out/elastic-mem-warmup.json"
      stop_server
    else
      tail -4 "$out/server-elastic-mem.log" > "$out/elastic-mem-server.failed"
    fi
    save_memory_stats "$mem_cgroup" "$out/elastic-mem.stats"
    remove_cgroup "$mem_cgroup"; mem_cgroup=""
  fi
fi

if want 10; then
  step "10/14 reload under load: resnet18 to version 2 beside mlp and textcls, good (RPC, SIGHUP) and bad"
  for run in good-rpc good-hup bad-rpc; do
    flags=""
    case $run in
      good-hup) flags="--hup" ;;
      bad-rpc) flags="--bad_version" ;;
    esac
    run_may_fail "reload-$run" "$bench" reload --model_repository=models --model=resnet18 \
      --others=mlp,textcls --before_s=$reload_before_s --after_s=$reload_after_s $flags \
      --log_dir="$out/logs-reload-$run" --json="$out/reload-$run.json"
  done
fi

if want 11; then
  step "11/14 metrics: a scrape of /metrics every 100 ms under open-loop load, mlp and resnet18"
  for model in mlp resnet18; do
    run "scrape-$model" "$bench" scrape --model_repository=models --model=$model \
      --interval_ms=100 --phase_s=10 --rounds=$scrape_rounds --json="$out/scrape-$model.json"
  done
fi

if want 12; then
  step "12/14 behind nginx: scale-out 1 -> 3 replicas and blue/green under load, warmup on vs off"
  lb_flags=(--out="$out")
  [ $quick = 1 ] && lb_flags+=(--quick)
  scripts/lb_bench.sh "${lb_flags[@]}" > /dev/null
fi

if want 13; then
  step "13/14 dynamic batching: mlp, resnet18 and textcls, on vs off, the no-model floor, first request"
  # For each model: batching on, then off (2 workers each), closed loop at concurrency 1/8/32/64,
  # then open loop (Poisson) at 70 % of the batching capacity: the best closed-loop throughput
  # with batching on. Then the same closed loops against kiln-floor-server on the same
  # repository: zeros instead of a model, the floor the gRPC front allows.
  for model in mlp resnet18 textcls; do
    for batching in on off; do
      repo=$(repo_of $model); [ $batching = on ] && repo=$(repo_of $model batched)
      metrics_port=$(free_port)
      start_server "$model-batching-$batching" "$repo" --workers=2 --metrics_port="$metrics_port"
      for concurrency in 1 8 32 64; do
        run "batching-$model-$batching-c$concurrency" "$bench" load --addr="127.0.0.1:$port" \
          --model=$model --mode=closed --concurrency=$concurrency --duration_s=$load_s \
          --warmup_requests=50 --json="$out/batching-$model-$batching-c$concurrency.json"
      done
      if [ $batching = on ]; then
        capacity=$(/usr/bin/python3 -c "import json; print(max(json.load(open(f'$out/batching-$model-on-c{c}.json'))['throughput_rps'] for c in (1, 8, 32, 64)))")
        rate=$(/usr/bin/python3 -c "print(round($capacity * 70 / 100, 2))")
      fi
      run "batching-$model-$batching-open" "$bench" load --addr="127.0.0.1:$port" --model=$model \
        --mode=open --arrival=poisson --rate=$rate --duration_s=$load_s --warmup_requests=50 \
        --json="$out/batching-$model-$batching-open.json"
      save_metrics "$model-batching-$batching" "$metrics_port"
      stop_server
    done
    start_floor "$model-floor" "$(repo_of $model)"
    for concurrency in 1 8 32 64; do
      run "batching-$model-floor-c$concurrency" "$bench" load --addr="127.0.0.1:$port" \
        --model=$model --mode=closed --concurrency=$concurrency --duration_s=$load_s \
        --warmup_requests=50 --json="$out/batching-$model-floor-c$concurrency.json"
    done
    stop_server
    # The first request after SERVING with batching on, against steady.
    run "coldstart-$model-batched" "$bench" coldstart \
      --model_repository="$(repo_of $model batched)" --model=$model --workers=2 \
      --repeat=$repeat --steady_requests=30 --json="$out/coldstart-$model-batched.json"
  done
fi

if want 14; then
  step "14/14 time to SERVING vs a naive server: $naive_models, 1 and 4 workers, kiln and naive side by side"
  # Issue 29: kiln against the naive baseline, a Python server (Debian's python3-torch and
  # python3-grpcio) that loads in the parent, forks its workers and runs three calls per warmed
  # shape (scripts/naive_server.py), both measured by the same kiln-bench coldstart on the same
  # repository, run by run side by side. kiln's runs also record its startup phases (/metrics).
  # 5 runs each (1 with --quick): a sub-millisecond first request, and a worker of 2 intra-op
  # threads on 2 vCPUs, vary from start to start by more than the 1.1x the first request is held to.
  # With 1 worker, also kiln-server-default-order: the same kiln-server linked in the default
  # library order (server/CMakeLists.txt, cmake/lookup_order.sh), for what that order costs its
  # process start.
  naive_repeat=$([ $quick = 1 ] && echo 1 || echo 5)
  default_order="$build/server/kiln-server-default-order"
  for model in $naive_models; do
    steady=30; case $model in resnet50|resnet18) steady=10 ;; esac
    for workers in 1 4; do
      kinds="kiln naive"
      [ $workers = 1 ] && [ -x "$default_order" ] && kinds="kiln kiln-default-order naive"
      for kind in $kinds; do
        name="coldstart-$kind-$model-w$workers"
        server_flag=()
        [ $kind = naive ] && server_flag=(--naive_server="$naive_server")
        [ $kind = kiln-default-order ] && server_flag=(--server="$default_order")
        run_may_fail "$name" "$bench" coldstart "${server_flag[@]}" \
          --model_repository="$(repo_of $model)" --model=$model --workers=$workers \
          --repeat=$naive_repeat --steady_requests=$steady --json="$out/$name.json"
      done
    done
  done
fi

step "write BENCHMARKS.md"
# The soak's section comes from its own run (scripts/soak.sh, 20 minutes and more): kept as it is.
soak=$(sed -n '/^## Soak/,$p' BENCHMARKS.md 2>/dev/null || true)
/usr/bin/python3 scripts/bench_report.py "$out" > BENCHMARKS.md
[ -n "$soak" ] && printf '\n%s\n' "$soak" >> BENCHMARKS.md
step "done: BENCHMARKS.md"
