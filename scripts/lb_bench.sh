#!/usr/bin/env bash
# The seed's scale-out and blue/green scenario behind a real gRPC load balancer (Debian's nginx),
# with kiln's warmup and then with --warmup=off replicas, one run each: `kiln-bench lb` on one
# model at a steady open-loop load. Writes <out>/lb-<model>-warmup-{on,off}.{cmd,log,json} and
# prints the BENCHMARKS.md section for them (scripts/bench.sh runs this as its last step).
#
# CPU placement on a machine with 2 or more CPUs: kiln-bench itself and nginx on CPU 0 with the
# first replica (taskset -c 0), every later replica on CPU 1 (--cpus=0,1,1), so that the replicas
# starting during the scale-out cannot take the serving replica's CPU. Green replica i goes where
# blue replica i is. On one CPU everything runs unpinned (and the report says so).
#
# Usage: scripts/lb_bench.sh [--quick] [--out=DIR] [--model=resnet18] [--rate=15]
#   --quick: shorter phases, for a smoke test. Build first (scripts/build.sh; bench.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0; out=bench-results; model=resnet18; rate=15
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    --out=*) out=${arg#--out=} ;;
    --model=*) model=${arg#--model=} ;;
    --rate=*) rate=${arg#--rate=} ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "lb_bench.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
steady_s=10; after_s=10; tail_s=5
[ $quick = 1 ] && { steady_s=4; after_s=3; tail_s=2; }

bench="${KILN_BUILD_DIR:-build}/bench/kiln-bench"
[ -x "$bench" ] || { echo "lb_bench.sh: $bench is missing: run scripts/build.sh first" >&2; exit 1; }
mkdir -p "$out"

pin=(); cpus=""
if [ "$(nproc)" -ge 2 ]; then
  pin=(taskset -c 0); cpus="--cpus=0,1,1"
  # How fast each of the two CPUs runs the model alone, in-process: on a VM the vCPUs need not be
  # equal, and after the scale-out most requests run on CPU 1.
  for cpu in 0 1; do
    name="lb-$model-forward-cpu$cpu"
    cmd=(taskset -c $cpu "${KILN_BUILD_DIR:-build}/bench/kiln-forward-bench" --model="$model"
         --calls=50 --json="$out/$name.json")
    echo "${cmd[*]}" > "$out/$name.cmd"
    "${cmd[@]}" > "$out/$name.log" 2>&1
  done
fi

for warmup in on off; do
  name="lb-$model-warmup-$warmup"
  cmd=("${pin[@]}" "$bench" lb --model_repository=models --model="$model" --rate="$rate"
       --arrival=constant --replicas=3 $cpus --steady_s=$steady_s --after_s=$after_s
       --tail_s=$tail_s --warmup=$warmup --log_dir="$out/logs-$name" --json="$out/$name.json")
  echo "== lb_bench.sh: $name" >&2
  echo "${cmd[*]}" > "$out/$name.cmd"
  "${cmd[@]}" > "$out/$name.log" 2>&1 || {
    echo "lb_bench.sh: '${cmd[*]}' failed:" >&2; tail -20 "$out/$name.log" >&2; exit 1; }
done
/usr/bin/python3 scripts/bench_report.py --only-lb "$out"
