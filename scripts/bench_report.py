#!/usr/bin/python3
"""Writes BENCHMARKS.md (to stdout) from the results scripts/bench.sh left in a folder: the JSON
each kiln-bench / kiln-forward-bench command wrote (<name>.json) and the command itself
(<name>.cmd). Every number in the report is one a tool printed; ratios are computed here.

Usage: /usr/bin/python3 scripts/bench_report.py bench-results > BENCHMARKS.md
"""

import datetime
import json
import os
import platform
import subprocess
import sys


def load(folder, name):
    with open(os.path.join(folder, name + ".json")) as f:
        return json.load(f)


def command(folder, name):
    with open(os.path.join(folder, name + ".cmd")) as f:
        return f.read().strip()


def package_version(name):
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True,
                              text=True, check=False).stdout.strip() or "?"
    except OSError:
        return "?"


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return (f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB, "
            f"{platform.system()} {platform.release()}, LibTorch {package_version('libtorch-dev')}, "
            f"gRPC {package_version('libgrpc++-dev')}, OpenBLAS {package_version('libopenblas0-openmp')}")


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "n/a"


def spread(metric, unit="", digits=0):
    return (f"{metric['median']:.{digits}f}{unit} ({metric['min']:.{digits}f}-"
            f"{metric['max']:.{digits}f})")


def startup_tables(folder, out):
    out.append("## Time to SERVING and memory: resnet50, weights shared vs each worker loading its own\n")
    out.append("Time from starting kiln-server to health SERVING (the port opens only once every worker "
               "is warm), and the total PSS of the process tree (master, zygote, workers) while serving. "
               "Median (min-max) over the runs.\n")
    out.append("| workers | ready, shared | ready, own copy | shared / own | PSS MB, shared | "
               "PSS MB, own copy | shared / own |")
    out.append("|---|---|---|---|---|---|---|")
    for workers in (1, 2, 4):
        on = load(folder, f"coldstart-resnet50-w{workers}-share-on")
        off = load(folder, f"coldstart-resnet50-w{workers}-share-off")
        out.append(
            f"| {workers} | {spread(on['ready_ms'], ' ms')} | {spread(off['ready_ms'], ' ms')} | "
            f"{ratio(on['ready_ms']['median'], off['ready_ms']['median'])} | "
            f"{spread(on['pss_mb'])} | {spread(off['pss_mb'])} | "
            f"{ratio(on['pss_mb']['median'], off['pss_mb']['median'])} |")
    out.append("")
    out.append("Commands: `" + command(folder, "coldstart-resnet50-w4-share-on") + "` and the same "
               "with `--workers=1|2|4` and `--share_weights=on|off`.\n")


def warmup_table(folder, out):
    out.append("## First request vs steady: warmup on vs off\n")
    out.append("2 workers; median (min-max) over the runs. The first request is sent 50 ms after SERVING "
               "(`--pause_ms`). \"back-to-back p50\" is the p50 of the sequential requests that follow "
               "it; \"after-pause p50\" is the p50 of 10 more requests on the now-warm server, each sent "
               "after the same 50 ms idle pause. So \"first / after-pause\" is the cold-start penalty "
               "alone (1.0 = none), while \"first / back-to-back\" also holds what waking an idle server "
               "costs any request (large for sub-ms models on this 2-vCPU VM). textcls is sent text "
               "(the tokenizer runs in the worker). \"first, off / on\" is how much slower the first "
               "request is without kiln's warmup.\n")
    out.append("| model | warmup | first | back-to-back p50 | first / back-to-back | after-pause p50 | "
               "first / after-pause | first, off / on |")
    out.append("|---|---|---|---|---|---|---|---|")
    for model in ("mlp", "resnet18", "textcls"):
        on = load(folder, f"coldstart-{model}-warmup-on")
        off = load(folder, f"coldstart-{model}-warmup-off")
        for name, run in (("on", on), ("off", off)):
            slower = ratio(off['first_ms']['median'], on['first_ms']['median']) if name == "off" else ""
            out.append(f"| {model} | {name} | {spread(run['first_ms'], ' ms', 2)} | "
                       f"{spread(run['steady_p50_ms'], ' ms', 2)} | {spread(run['ratio'], 'x', 2)} | "
                       f"{spread(run['idle_p50_ms'], ' ms', 2)} | {spread(run['idle_ratio'], 'x', 2)} | "
                       f"{slower} |")
    out.append("")
    out.append("Command: `" + command(folder, "coldstart-textcls-warmup-on") + "` (and the other models, "
               "and `--warmup=off`).\n")


def open_loop_table(folder, out):
    out.append("## Open-loop latency at 50 / 70 / 90 % of capacity\n")
    out.append("Capacity: closed-loop throughput at concurrency 4 (2 workers). Then Poisson arrivals at a "
               "fixed rate; latency counts from each request's scheduled time (no coordinated omission).\n")
    out.append("| model | capacity | load | rate | achieved | p50 | p99 | errors |")
    out.append("|---|---|---|---|---|---|---|---|")
    for model in ("mlp", "resnet18"):
        capacity = load(folder, f"capacity-{model}")["throughput_rps"]
        for pct in (50, 70, 90):
            r = load(folder, f"open-{model}-{pct}")
            errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "none"
            out.append(f"| {model} | {capacity:.1f} req/s | {pct} % | {r['target_rate']:.1f} req/s | "
                       f"{r['throughput_rps']:.1f} req/s | {r['latency_ms']['p50']:.2f} ms | "
                       f"{r['latency_ms']['p99']:.2f} ms | {errors} |")
    out.append("")
    out.append("Commands: `" + command(folder, "capacity-resnet18") + "`, then `" +
               command(folder, "open-resnet18-90") + "`.\n")


def overhead_table(folder, out):
    roundtrip = load(folder, "roundtrip-mlp")["latency_ms"]
    forward = load(folder, "forward-mlp")["latency_ms"]
    out.append("## Per-request overhead: mlp, batch 1\n")
    out.append("| measure | p50 | p99 |")
    out.append("|---|---|---|")
    out.append(f"| gRPC round trip through kiln (closed loop, concurrency 1) | {roundtrip['p50']:.3f} ms | {roundtrip['p99']:.3f} ms |")
    out.append(f"| forward pass in-process, same backend and threads | {forward['p50']:.3f} ms | {forward['p99']:.3f} ms |")
    out.append(f"| **overhead per request** (p50 difference) | **{roundtrip['p50'] - forward['p50']:.3f} ms** | |")
    out.append("")
    out.append("Commands: `" + command(folder, "roundtrip-mlp") + "` and `" + command(folder, "forward-mlp") + "`.\n")


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "bench-results"
    out = ["# kiln benchmarks", "",
           "Written by `scripts/bench.sh` on " + datetime.date.today().isoformat() + ". Every number "
           "below was printed by `kiln-bench` or `kiln-forward-bench` in one run (raw JSON in "
           "`bench-results/`); absolute times vary between machines, so compare the ratios.", "",
           "Machine: " + machine() + ".", ""]
    startup_tables(folder, out)
    warmup_table(folder, out)
    open_loop_table(folder, out)
    overhead_table(folder, out)
    print("\n".join(out))


if __name__ == "__main__":
    main()
