#!/usr/bin/python3
"""Writes BENCHMARKS.md (to stdout) from the results scripts/bench.sh left in a folder: the JSON
each kiln-bench / kiln-forward-bench command wrote (<name>.json) and the command itself
(<name>.cmd). Every number in the report is one a tool printed; ratios are computed here.

Usage: /usr/bin/python3 scripts/bench_report.py bench-results > BENCHMARKS.md
       /usr/bin/python3 scripts/bench_report.py --only-reload bench-results   (that section alone)
       /usr/bin/python3 scripts/bench_report.py --only-scrape bench-results   (that section alone)
       /usr/bin/python3 scripts/bench_report.py --only-lb bench-results       (that section alone)
       /usr/bin/python3 scripts/bench_report.py --only-naive bench-results    (that section alone)
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


# The columns first_vs_steady_cells fills, and what its last one means.
FIRST_VS_STEADY_HEADER = ("first | back-to-back p50 | first / back-to-back | after-pause p50 | "
                          "first / after-pause | CPU, first / after-pause")
FIRST_VS_STEADY_CPU = ("\"CPU, first / after-pause\" is the worker's CPU time for the first request "
                       "over the after-pause requests' median (kiln's `kiln_timing` response "
                       "parameters): near 1.0 while the wall ratio is higher, the first request "
                       "waited (for a CPU, or on its way through the server), it did not run cold.")


FIRST_VS_STEADY_COLUMNS = FIRST_VS_STEADY_HEADER.count("|") + 1


def first_vs_steady_head(out, before, after=()):
    """The head of a table whose columns are `before`, first_vs_steady_cells' and `after`."""
    columns = [*before, FIRST_VS_STEADY_HEADER, *after]
    out.append("| " + " | ".join(columns) + " |")
    out.append("|" + "---|" * (len(before) + FIRST_VS_STEADY_COLUMNS + len(after)))


def first_vs_steady_cells(run):
    """A coldstart run's first request, back-to-back and after-pause p50s, their ratios, and the
    worker's CPU time ratio (n/a in runs from before coldstart reported it)."""
    cpu = run.get("cpu_idle_ratio", {})
    return (f"{spread(run['first_ms'], ' ms', 2)} | {spread(run['steady_p50_ms'], ' ms', 2)} | "
            f"{spread(run['ratio'], 'x', 2)} | {spread(run['idle_p50_ms'], ' ms', 2)} | "
            f"{spread(run['idle_ratio'], 'x', 2)} | "
            f"{spread(cpu, 'x', 2) if cpu.get('median') else 'n/a'}")


def warmup_table(folder, out):
    out.append("## First request vs steady: warmup on vs off\n")
    out.append("2 workers; median (min-max) over the runs. The first request is sent 50 ms after SERVING "
               "(`--pause_ms`). \"back-to-back p50\" is the p50 of the sequential requests that follow "
               "it; \"after-pause p50\" is the p50 of 10 more requests on the now-warm server, each sent "
               "after the same 50 ms idle pause. So \"first / after-pause\" is the cold-start penalty "
               "alone (1.0 = none), while \"first / back-to-back\" also holds what waking an idle server "
               "costs any request (large for sub-ms models on this 2-vCPU VM). textcls is sent text "
               "(the tokenizer runs in the worker). " + FIRST_VS_STEADY_CPU + " \"first, off / on\" "
               "is how much slower the first request is without kiln's warmup.\n")
    first_vs_steady_head(out, ("model", "warmup"), ("first, off / on",))
    for model in ("mlp", "resnet18", "textcls"):
        on = load(folder, f"coldstart-{model}-warmup-on")
        off = load(folder, f"coldstart-{model}-warmup-off")
        for name, run in (("on", on), ("off", off)):
            slower = ratio(off['first_ms']['median'], on['first_ms']['median']) if name == "off" else ""
            out.append(f"| {model} | {name} | {first_vs_steady_cells(run)} | {slower} |")
    out.append("")
    out.append("Command: `" + command(folder, "coldstart-textcls-warmup-on") + "` (and the other models, "
               "and `--warmup=off`).\n")
    out.append("### The same from a Triton repository, with no kiln settings\n")
    out.append("Each model's directory as a Triton user brings it: config.pbtxt without "
               "`instance_group` (kiln sizes the workers) and no kiln.pbtxt, so kiln's defaults "
               "alone warm it (batch 1, `max_batch_size` 8; each shape settled: two calls in a row "
               "that agree, 3 calls at least at the first). Same method and columns as above; "
               "\"ready\" is the time from starting kiln-server to SERVING.\n")
    first_vs_steady_head(out, ("model", "ready"))
    for model in ("mlp", "resnet18", "resnet50"):
        run = load(folder, f"coldstart-{model}-triton")
        out.append(f"| {model} | {spread(run['ready_ms'], ' ms')} | {first_vs_steady_cells(run)} |")
    out.append("")
    out.append("Command: `" + command(folder, "coldstart-resnet50-triton") + "` (and mlp, resnet18).\n")


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


BATCHING_MODELS = ("mlp", "resnet18", "textcls")
BATCHING_CONCURRENCIES = (1, 8, 32, 64)
NOT_MEASURED = "not measured"


def optional_run(folder, name):
    """The JSON of NAME, or None when its step did not write it (not run, or --steps skipped it)."""
    if not os.path.exists(os.path.join(folder, name + ".json")):
        return None
    return load(folder, name)


def errors_cell(run):
    if run is None:
        return NOT_MEASURED
    return ", ".join(f"{k} {v}" for k, v in run["errors"].items()) or "none"


def batching_cells(runs, value):
    """'a / b / c' of value(run) for each run, 'n/m' for a run not measured."""
    return " / ".join(value(run) if run is not None else "n/m" for run in runs)


def batching_capacity(folder, model):
    """The batching capacity the open loop ran at 70 % of: the best closed-loop throughput with
    batching on (what bench.sh computes), or None."""
    runs = [optional_run(folder, f"batching-{model}-on-c{c}") for c in BATCHING_CONCURRENCIES]
    rates = [run["throughput_rps"] for run in runs if run is not None]
    return max(rates) if rates else None


def batching_closed_table(folder, out):
    out.append("### Closed loop: batching off, on, and the no-model floor\n")
    out.append("| model | concurrency | off: req/s | on: req/s | floor: req/s | on / off | on / floor | "
               "p50 off / on / floor | p99 off / on / floor | errors off / on |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for model in BATCHING_MODELS:
        for concurrency in BATCHING_CONCURRENCIES:
            off, on, floor = (optional_run(folder, f"batching-{model}-{kind}-c{concurrency}")
                              for kind in ("off", "on", "floor"))
            if off is None and on is None and floor is None:
                out.append(f"| {model} | {concurrency} | {NOT_MEASURED} | | | | | | | |")
                continue
            rps = [f"{run['throughput_rps']:.0f}" if run is not None else NOT_MEASURED
                   for run in (off, on, floor)]
            on_off = (ratio(on["throughput_rps"], off["throughput_rps"])
                      if on is not None and off is not None else NOT_MEASURED)
            on_floor = (f"{100 * on['throughput_rps'] / floor['throughput_rps']:.0f} %"
                        if on is not None and floor is not None and floor["throughput_rps"]
                        else NOT_MEASURED)
            p50 = batching_cells((off, on, floor), lambda r: f"{r['latency_ms']['p50']:.2f}")
            p99 = batching_cells((off, on, floor), lambda r: f"{r['latency_ms']['p99']:.2f}")
            out.append(f"| {model} | {concurrency} | {rps[0]} | {rps[1]} | {rps[2]} | {on_off} | "
                       f"{on_floor} | {p50} ms | {p99} ms | {errors_cell(off)} / {errors_cell(on)} |")
    out.append("")
    if has_run(folder, "batching-mlp-on-c32"):
        out.append("Commands: `" + command(folder, "batching-mlp-on-c32") + "` (and the other models "
                   "and concurrencies, and the repository without `dynamic_batching`).\n")
    if has_run(folder, "server-mlp-floor") and has_run(folder, "batching-mlp-floor-c32"):
        out.append("The floor: `" + command(folder, "server-mlp-floor") + "`, then `" +
                   command(folder, "batching-mlp-floor-c32") + "`.\n")


def batching_open_table(folder, out):
    out.append("### Open loop at 70 % of the batching capacity\n")
    out.append("Capacity: the best closed-loop throughput with batching on (above). Poisson arrivals at "
               "70 % of it, the same rate with batching off and on; latency counts from each "
               "request's scheduled time, so a server that cannot keep up shows it as latency and "
               "errors (a full queue is RESOURCE_EXHAUSTED), not as a lower rate.\n")
    out.append("| model | capacity | rate | batching | achieved | p50 | p95 | p99 | p99 on / off | errors |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for model in BATCHING_MODELS:
        capacity = batching_capacity(folder, model)
        capacity_cell = f"{capacity:.0f} req/s" if capacity is not None else NOT_MEASURED
        off, on = (optional_run(folder, f"batching-{model}-{kind}-open") for kind in ("off", "on"))
        for kind, run in (("off", off), ("on", on)):
            if run is None:
                out.append(f"| {model} | {capacity_cell} | | {kind} | {NOT_MEASURED} | | | | | |")
                continue
            latency = run["latency_ms"]
            versus = ""
            if kind == "on" and off is not None:
                versus = ratio(latency["p99"], off["latency_ms"]["p99"])
            out.append(f"| {model} | {capacity_cell} | {run['target_rate']:.1f} req/s | {kind} | "
                       f"{run['throughput_rps']:.1f} req/s | {latency['p50']:.2f} ms | "
                       f"{latency['p95']:.2f} ms | {latency['p99']:.2f} ms | {versus} | "
                       f"{errors_cell(run)} |")
    out.append("")
    if has_run(folder, "batching-mlp-on-open"):
        out.append("Command: `" + command(folder, "batching-mlp-on-open") + "` (and off, and the other "
                   "models).\n")


def batching_targets(folder, out):
    """Issue 27's targets, judged from the numbers above."""
    off, on, floor = (optional_run(folder, f"batching-mlp-{kind}-c32") for kind in ("off", "on", "floor"))
    if off is None or on is None or floor is None:
        out.append(f"Target, mlp at concurrency 32 (on >= 2x off, p99 no worse, >= 60 % of the floor): "
                   f"{NOT_MEASURED}.\n")
    else:
        speedup = on["throughput_rps"] / off["throughput_rps"] if off["throughput_rps"] else 0
        share = on["throughput_rps"] / floor["throughput_rps"] if floor["throughput_rps"] else 0
        p99_on, p99_off = on["latency_ms"]["p99"], off["latency_ms"]["p99"]
        checks = [(speedup >= 2, f"on / off {speedup:.2f}x (>= 2x)"),
                  (p99_on <= p99_off, f"p99 {p99_on:.2f} ms on vs {p99_off:.2f} ms off (no worse)"),
                  (share >= 0.6, f"on / floor {100 * share:.0f} % (>= 60 %)")]
        parts = "; ".join(f"{text}: {verdict(ok)}" for ok, text in checks)
        out.append(f"Target, mlp at concurrency 32: {verdict(all(ok for ok, _ in checks))} ({parts}).\n")
    off, on = (optional_run(folder, f"batching-mlp-{kind}-c1") for kind in ("off", "on"))
    if off is None or on is None:
        out.append(f"Target, mlp at concurrency 1 (p50 on within 0.03 ms of off): {NOT_MEASURED}.\n")
    else:
        gap = on["latency_ms"]["p50"] - off["latency_ms"]["p50"]
        out.append(f"Target, mlp at concurrency 1: p50 on - off {gap:+.3f} ms (within 0.03 ms): "
                   f"{verdict(gap <= 0.03)}.\n")


def metric_sum(text, name, model):
    """The sum of NAME's samples for MODEL in a /metrics text (every version and other label)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def batching_counters_table(folder, out):
    out.append("### What the server counted\n")
    out.append("From each server's /metrics after all its closed and open loops (warmup requests "
               "included, the readiness check's not): inferences (`nv_inference_count`, rows), "
               "executions (`nv_inference_exec_count`, forward passes), rows per execution, and "
               "cold-shape hits (`kiln_cold_shape_hits_total`), which must stay 0.\n")
    out.append("| model | batching | inferences | executions | rows per execution | cold-shape hits |")
    out.append("|---|---|---|---|---|---|")
    for model in BATCHING_MODELS:
        for kind in ("off", "on"):
            path = os.path.join(folder, f"metrics-{model}-batching-{kind}.txt")
            if not os.path.exists(path):
                out.append(f"| {model} | {kind} | {NOT_MEASURED} | | | |")
                continue
            with open(path) as f:
                text = f.read()
            inferences = metric_sum(text, "nv_inference_count", model)
            executions = metric_sum(text, "nv_inference_exec_count", model)
            cold = metric_sum(text, "kiln_cold_shape_hits_total", model)
            per = f"{inferences / executions:.2f}" if executions else NOT_MEASURED
            out.append(f"| {model} | {kind} | {inferences:.0f} | {executions:.0f} | {per} | "
                       f"{cold:.0f} |")
    out.append("")


def batching_first_request_table(folder, out):
    out.append("### First request after SERVING, batching on\n")
    out.append("`kiln-bench coldstart` on the repository with `dynamic_batching { }`, 2 workers; the "
               "same method and columns as \"First request vs steady\" above (target: first / "
               "after-pause <= 1.1x).\n")
    first_vs_steady_head(out, ("model", "ready"))
    for model in BATCHING_MODELS:
        run = optional_run(folder, f"coldstart-{model}-batched")
        if run is None:
            out.append(f"| {model} | {NOT_MEASURED} |" + " |" * FIRST_VS_STEADY_COLUMNS)
            continue
        out.append(f"| {model} | {spread(run['ready_ms'], ' ms')} | {first_vs_steady_cells(run)} |")
    out.append("")
    if has_run(folder, "coldstart-textcls-batched"):
        out.append("Command: `" + command(folder, "coldstart-textcls-batched") + "` (and the other "
                   "models).\n")


def batching_table(folder, out):
    out.append("## Dynamic batching: on vs off, and the no-model floor\n")
    out.append("2 workers; each client sends one row at a time and waits for its answer. \"on\" is the "
               "demo's config.pbtxt with `dynamic_batching { }` (docs/batching.md): requests that queue "
               "while both workers are busy run as one forward pass, at a warmed size (mlp warms 1, 2, 4 "
               "and 8; resnet18 1 and 4; textcls 1 and 4 at 16-128 tokens, and is sent text). \"floor\" "
               "is `kiln-floor-server` on the same repository: each request routed, decoded and "
               "answered (zeros of the config's outputs) with kiln's codec on the same gRPC callback "
               "API, with no queue, no worker and no model: the most the front end allows on this "
               "machine, with the load generator beside it.\n")
    if not any(name.startswith("batching-") and name.endswith(".json")
               for name in os.listdir(folder)):
        out.append(f"Not measured: {folder}/ has no batching-*.json (`scripts/bench.sh --steps=13` "
                   "measures it).\n")
        return
    batching_targets(folder, out)
    batching_closed_table(folder, out)
    batching_open_table(folder, out)
    batching_counters_table(folder, out)
    batching_first_request_table(folder, out)


NAIVE_MODELS = ("resnet50", "resnet18", "mlp", "textcls")
NAIVE_WORKERS = (1, 4)
# kiln's startup phases in the order they happen (docs/metrics.md); a phase not listed here (a new
# one) follows them in the order it first appears, and time_to_serving (the whole) comes last.
STARTUP_PHASES = ("start_process", "read_repository", "load_tokenizer", "load_model", "fork_zygote",
                  "warm_workers", "readiness_check", "prime_port", "open_port")


def naive_run(folder, name):
    """(the JSON of NAME or None, and what a cell says when it is None)."""
    run = optional_run(folder, name)
    if run is not None:
        return run, ""
    reason = text_of(folder, name + ".failed").strip().splitlines()
    return None, why_missing(folder, name, reason[-1] if reason else "")


def naive_rows(folder, out):
    """The kiln vs naive table; returns the per-model w4 / w1 verdicts."""
    out.append("| model | workers | kiln ready | naive ready | kiln / naive (<= 1.2x) | "
               "kiln first / after-pause (<= 1.1) | naive first / after-pause | kiln PSS MB | "
               "naive PSS MB |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    scaling = []
    for model in NAIVE_MODELS:
        kiln_ready = {}
        for workers in NAIVE_WORKERS:
            names = [f"coldstart-{kind}-{model}-w{workers}" for kind in ("kiln", "naive")]
            if not any(has_run(folder, name) for name in names):
                continue
            (kiln, kiln_why), (naive, naive_why) = (naive_run(folder, name) for name in names)
            cells = [model, str(workers),
                     spread(kiln["ready_ms"], " ms") if kiln else kiln_why,
                     spread(naive["ready_ms"], " ms") if naive else naive_why]
            if kiln and naive:
                share = kiln["ready_ms"]["median"] / naive["ready_ms"]["median"]
                cells.append(f"{share:.2f}x: {verdict(share <= 1.2)}")
            else:
                cells.append(NOT_MEASURED)
            if kiln:
                # The worker's CPU time, first / after-pause (kiln_timing; older runs lack it).
                cpu = kiln.get("cpu_idle_ratio", {}).get("median", 0)
                cpu_note = f"; CPU {cpu:.2f}x" if cpu > 0 else ""
                cells.append(f"{spread(kiln['idle_ratio'], 'x', 2)}: "
                             f"{verdict(kiln['idle_ratio']['median'] <= 1.1)} "
                             f"(back-to-back {kiln['ratio']['median']:.2f}x{cpu_note})")
                kiln_ready[workers] = kiln["ready_ms"]["median"]
            else:
                cells.append(kiln_why)
            cells.append(f"{spread(naive['idle_ratio'], 'x', 2)} (back-to-back "
                         f"{naive['ratio']['median']:.2f}x)" if naive else naive_why)
            cells.append(spread(kiln["pss_mb"]) if kiln else kiln_why)
            cells.append(spread(naive["pss_mb"]) if naive else naive_why)
            out.append("| " + " | ".join(cells) + " |")
        if 1 in kiln_ready and 4 in kiln_ready:
            growth = kiln_ready[4] / kiln_ready[1]
            scaling.append(f"{model} {growth:.2f}x: {verdict(growth <= 1.3)}")
        elif kiln_ready:
            scaling.append(f"{model} {NOT_MEASURED}")
    out.append("")
    return scaling


def naive_phases_table(folder, out):
    """kiln's startup phases (the coldstart JSON's "phases"), median ms, per model and workers."""
    out.append("### kiln's startup phases\n")
    out.append("Each kiln run's `kiln_startup_phase_duration_seconds{phase}` (summed over the models, "
               "here one) and `kiln_startup_time_to_serving_seconds` (from the process's own start "
               "to the port opening), scraped from its `/metrics` after the requests; median ms over "
               "the runs (the coldstart JSON's \"phases\"; a phase this table does not know yet is "
               "shown after the known ones). \"kiln ready\" above counts from the fork, so it "
               "also holds what comes before the process's own clock starts.\n")
    rows, seen = [], []
    for model in NAIVE_MODELS:
        for workers in NAIVE_WORKERS:
            run = optional_run(folder, f"coldstart-kiln-{model}-w{workers}")
            if run is None or not run.get("phases"):
                continue
            rows.append((model, workers, run["phases"]))
            seen += [name for name in run["phases"] if name not in seen]
    if not rows:
        out.append(f"Not measured: no kiln run with phases in {folder}/.\n")
        return
    order = ([p for p in STARTUP_PHASES if p in seen] +
             [p for p in seen if p not in STARTUP_PHASES and p != "time_to_serving"] +
             (["time_to_serving"] if "time_to_serving" in seen else []))
    out.append("| model | workers | " + " | ".join(order) + " |")
    out.append("|---|---|" + "---|" * len(order))
    for model, workers, phases in rows:
        cells = [f"{phases[p]:.1f}" if p in phases else "-" for p in order]
        out.append(f"| {model} | {workers} | " + " | ".join(cells) + " |")
    out.append("")


def naive_table(folder, out):
    out.append("## Time to SERVING: kiln vs a naive server\n")
    out.append("Issue 29. The naive server is what most would write first (`scripts/naive_server.py`, "
               "Debian's python3-torch and python3-grpcio): it loads the TorchScript model in the "
               "parent, forks its workers, each runs 3 forward passes per shape kiln warms for that "
               "model (`max(1, CPUs / workers)` threads each), and once every worker is warm they "
               "all serve one port (SO_REUSEPORT). kiln-server and it are started by the same "
               "`kiln-bench coldstart` on the same repository, one after the other for each model "
               "and worker count, and measured the same way: \"ready\" is from the fork to health "
               "SERVING, \"first / after-pause\" the first request (50 ms after SERVING) over the "
               "p50 of 10 requests each sent after the same 50 ms pause on the now-warm server: the "
               "cold-start penalty alone, as in \"First request vs steady\" (in brackets, over the "
               "back-to-back p50, which also holds what waking an idle server costs any request; "
               "and for kiln, \"CPU\": the worker's CPU time for the first request over the "
               "after-pause ones' median, from kiln's `kiln_timing` response parameters: the same "
               "CPU time in more wall time is waiting for a CPU, not a cold path), "
               "PSS the whole process tree's. Median (min-max) over the runs. "
               "Targets: kiln's ready <= 1.2x the naive server's, kiln's first request <= 1.1x "
               "steady, and kiln's ready with 4 workers <= 1.3x with 1.\n")
    names = [f"coldstart-{kind}-{model}-w{workers}" for model in NAIVE_MODELS
             for workers in NAIVE_WORKERS for kind in ("kiln", "naive")]
    if not any(has_run(folder, name) for name in names):
        out.append(f"Not measured: {folder}/ has no coldstart-naive-*.json (`scripts/bench.sh "
                   "--steps=14` measures it).\n")
        return
    scaling = naive_rows(folder, out)
    out.append("Target, kiln's ready with 4 workers / with 1 (<= 1.3x): " +
               ("; ".join(scaling) if scaling else NOT_MEASURED) + ".\n")
    example = next((name for name in names if name.startswith("coldstart-naive-") and
                    has_run(folder, name)), None)
    if example:
        out.append("Commands: `" + command(folder, example) + "`, and the same without "
                   "`--naive_server` for kiln, for each model and `--workers=1|4`.\n")
    naive_phases_table(folder, out)
    library_order_table(folder, out)


def library_order_table(folder, out):
    """kiln-server against the same binary linked in the default library order, 1 worker."""
    rows = []
    for model in NAIVE_MODELS:
        runs = [optional_run(folder, f"coldstart-{kind}-{model}-w1")
                for kind in ("kiln", "kiln-default-order")]
        if all(run is not None and run.get("phases", {}).get("start_process") for run in runs):
            rows.append((model, *runs))
    out.append("### Process start: kiln-server's library order vs the default order\n")
    if not rows:
        out.append(f"Not measured: {folder}/ has no coldstart-kiln-default-order-*-w1.json "
                   "(`scripts/bench.sh --steps=14` measures it).\n")
        return
    out.append("Debian's LibTorch brings in about 340 shared libraries, and the dynamic linker looks "
               "each of about 150,000 symbol references up in them in turn: kiln-server names the "
               "ones that answer most first on its link line (`cmake/lookup_order.sh`, keeping "
               "every strong definition in its library). `kiln-server-default-order` is the same "
               "binary linked in the default order. Same `kiln-bench coldstart` runs as above, 1 "
               "worker, one after the other; start_process is the phase before main() (libraries "
               "loaded and initialised), median ms.\n")
    out.append("| model | start_process, ordered | start_process, default | ordered / default | "
               "ready, ordered | ready, default | ordered / default |")
    out.append("|---|---|---|---|---|---|---|")
    for model, ordered, default in rows:
        start = [run["phases"]["start_process"] for run in (ordered, default)]
        ready = [run["ready_ms"]["median"] for run in (ordered, default)]
        out.append(f"| {model} | {start[0]:.0f} ms | {start[1]:.0f} ms | "
                   f"{start[0] / start[1]:.2f}x | {spread(ordered['ready_ms'], ' ms')} | "
                   f"{spread(default['ready_ms'], ' ms')} | {ready[0] / ready[1]:.2f}x |")
    out.append("")


def overhead_table(folder, out):
    out.append("## Per-request overhead: mlp, batch 1\n")
    roundtrip = load(folder, "roundtrip-mlp")["latency_ms"]
    forward = load(folder, "forward-mlp")["latency_ms"]
    out.append("| measure | p50 | p99 |")
    out.append("|---|---|---|")
    out.append(f"| gRPC round trip through kiln (closed loop, concurrency 1) | {roundtrip['p50']:.3f} ms | {roundtrip['p99']:.3f} ms |")
    out.append(f"| forward pass in-process, same backend and threads | {forward['p50']:.3f} ms | {forward['p99']:.3f} ms |")
    out.append(f"| **overhead per request** (p50 difference) | **{roundtrip['p50'] - forward['p50']:.3f} ms** | |")
    out.append("")
    out.append("Commands: `" + command(folder, "roundtrip-mlp") + "` and `" + command(folder, "forward-mlp") + "`.\n")


def maybe(folder, name):
    """The JSON of a run that may have failed (run_may_fail), and why it did, or None."""
    data = optional_run(folder, name)
    failed = os.path.join(folder, name + ".failed")
    reason = None
    if os.path.exists(failed):
        with open(failed) as f:
            reason = " ".join(f.read().split())[-300:] or "failed"
    return data, reason


def text_of(folder, name, default=""):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return f.read().strip() or default


def cpu_table(folder, out):
    out.append("## CPU sizing: quiet, under a 1-CPU quota, beside two busy loops (resnet50)\n")
    out.append("One cold start each (`kiln-bench coldstart --workers=0`: the count comes from the config "
               "or the CPUs), then 100 sequential requests for the steady p50 and p95. **automatic**: the config leaves `instance_group` unset, so kiln sizes "
               "workers x intra-op threads to the CPUs it has (affinity and CFS quota), OpenMP threads "
               "wait passively, workers warm at idle priority. **old**: kiln's earlier default on this "
               "machine: 1 worker of as many intra-op threads as the node has cores, libgomp's default "
               "spinning (`GOMP_SPINCOUNT=300000`) and warming at normal priority "
               "(`--warmup_priority=normal`). The quota is a cgroup the server runs in (kiln-bench "
               "outside it); the busy loops are two `bash` loops at nice 0 beside the server. "
               "\"vs quiet\" compares with the same setting's quiet run. Targets (issue #9): under the "
               "quota p95 / p50 <= 1.1 and first <= 1.1x steady; beside two busy loops steady p50 <= "
               "2.5x and time to SERVING <= 3x the quiet run.\n")
    skipped = text_of(folder, "cpu-quota.skipped")
    if skipped:
        out.append(f"The 1-CPU quota rows are skipped on this machine: {skipped}.\n")
    out.append("| setting | condition | workers x threads | ready | ready vs quiet | first | steady p50 | "
               "steady p95 | p95 / p50 | first / steady | p50 vs quiet |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for setting in ("auto", "old"):
        quiet, _ = maybe(folder, f"cpu-resnet50-{setting}-quiet")
        for condition in ("quiet", "quota", "spinners"):
            name = f"cpu-resnet50-{setting}-{condition}"
            if not os.path.exists(os.path.join(folder, name + ".cmd")):
                continue
            run, reason = maybe(folder, name)
            label = {"auto": "automatic", "old": "old"}[setting]
            cond = {"quiet": "quiet", "quota": "1-CPU quota", "spinners": "2 busy loops"}[condition]
            plan = text_of(folder, name + ".plan", "?").split(": ", 1)[-1]
            if reason or run is None:
                out.append(f"| {label} | {cond} | {plan} | failed: {reason} | | | | | | | |")
                continue
            ready = run["ready_ms"]["median"]
            p50 = run["steady_p50_ms"]["median"]
            p95 = run["steady_p95_ms"]["median"]
            vs_ready = ratio(ready, quiet["ready_ms"]["median"]) if quiet and condition != "quiet" else ""
            vs_p50 = ratio(p50, quiet["steady_p50_ms"]["median"]) if quiet and condition != "quiet" else ""
            out.append(f"| {label} | {cond} | {plan} | {ready:.0f} ms | {vs_ready} | "
                       f"{run['first_ms']['median']:.1f} ms | {p50:.1f} ms | {p95:.1f} ms | "
                       f"{ratio(p95, p50)} | {ratio(run['first_ms']['median'], p50)} | {vs_p50} |")
    out.append("")
    out.append("Commands: `" + command(folder, "cpu-resnet50-auto-spinners") + "` (automatic, beside "
               "the busy loops) and `" + command(folder, "cpu-resnet50-old-quiet") + "` (old).\n")


def scaleout_table(folder, out):
    out.append("## Scale-out: replica B starts beside loaded replica A (resnet18, 15 req/s)\n")
    out.append("`kiln-bench scaleout`: replica A serves Poisson arrivals at 15 req/s; 8 s in, replica B "
               "(the same model and settings) starts on the same machine. A's latency from each "
               "request's scheduled time, before B started and while B warms (until B's health says "
               "SERVING). Target (issue #9): with the automatic settings A's p99 while B warms <= 2x "
               "its p99 before, zero errors, B SERVING.\n")
    out.append("| setting | A before: p50 / p95 / p99 | A while B warms: p50 / p95 / p99 | p99 while / before "
               "| A's errors | B ready |")
    out.append("|---|---|---|---|---|---|")
    for setting in ("auto", "old"):
        run, reason = maybe(folder, f"scaleout-resnet18-{setting}")
        label = {"auto": "automatic", "old": "old"}[setting]
        if run is None:
            out.append(f"| {label} | failed: {reason} | | | | |")
            continue
        before, warming = run["phases"][0], run["phases"][1]
        cells = [f"{p['p50_ms']:.1f} / {p['p95_ms']:.1f} / {p['p99_ms']:.1f} ms ({p['count']} req)"
                 for p in (before, warming)]
        ready = (f"{run['b_ready_ms']:.0f} ms" if run["b_ready_ms"] is not None
                 else f"never in {run['duration_s'] - run['start_b_s']:.0f} s: {run['b_error']}")
        out.append(f"| {label} | {cells[0]} | {cells[1]} | {run['p99_ratio']:.2f}x | {run['errors']} | "
                   f"{ready} |")
    out.append("")
    out.append("Commands: `" + command(folder, "scaleout-resnet18-auto") + "` and `" +
               command(folder, "scaleout-resnet18-old") + "`.\n")


def threads_table(folder, out):
    out.append("## Threads vs workers: one request's latency against throughput (resnet50, quiet)\n")
    out.append("The same CPUs spent two ways, both waiting passively: the automatic plan (one intra-op "
               "thread per worker, as many workers as CPUs) and one worker with every CPU as an intra-op "
               "thread. Closed loop for 10 s at concurrency 1 (one request at a time: its latency) and "
               "2.\n")
    out.append("| plan | c=1 p50 | c=1 throughput | c=2 p50 | c=2 throughput |")
    out.append("|---|---|---|---|---|")
    for setting in ("auto", "old"):
        one = load(folder, f"threads-{setting}-c1")
        two = load(folder, f"threads-{setting}-c2")
        plan = text_of(folder, f"threads-{setting}.plan", "?")
        out.append(f"| {plan} | {one['latency_ms']['p50']:.1f} ms | {one['throughput_rps']:.1f} req/s | "
                   f"{two['latency_ms']['p50']:.1f} ms | {two['throughput_rps']:.1f} req/s |")
    out.append("")
    out.append("Command: `" + command(folder, "threads-auto-c2") + "`.\n")


def wait_table(folder, out):
    out.append("## OpenMP waiting: resnet50 with 2 intra-op threads, quiet and beside two busy loops\n")
    out.append("`kiln-forward-bench` (forward passes in-process, no server) with 2 intra-op threads, batch 1, "
               "p50 of the timed calls. **passive**: kiln's default (`OMP_WAIT_POLICY=PASSIVE`); "
               "**libgomp default**: threads spin 300,000 times before they sleep (what kiln did "
               "before); **spin 1000**: `GOMP_SPINCOUNT=1000`, a short spin an operator may set on "
               "dedicated CPUs. Workers with one intra-op thread (kiln's automatic plan) run no parallel "
               "region and are the same under all three. Beside the busy loops these numbers swing "
               "widely from run to run (where the scheduler puts the two threads): compare one run's "
               "rows with each other, and see docs/operating.md ('Threads, workers and the CPUs') "
               "for the spread over several runs.\n")
    out.append("| waiting | quiet p50 | beside 2 busy loops p50 | busy / quiet |")
    out.append("|---|---|---|---|")
    for wait, label in (("passive", "passive"), ("default", "libgomp default"), ("spin1000", "spin 1000")):
        quiet = load(folder, f"wait-{wait}-quiet")["latency_ms"]["p50"]
        busy = load(folder, f"wait-{wait}-spinners")["latency_ms"]["p50"]
        out.append(f"| {label} | {quiet:.1f} ms | {busy:.1f} ms | {ratio(busy, quiet)} |")
    out.append("")
    out.append("Command: `" + command(folder, "wait-passive-spinners") + "`.\n")


def verdict(ok):
    return "met" if ok else "**missed**"


def why_missing(folder, name, reason):
    """What a table cell says for a run without results: why it failed, or that it never ran."""
    if reason:
        return f"failed: {reason}"
    return "failed: no results" if has_run(folder, name) else "not run"


def has_run(folder, name):
    return os.path.exists(os.path.join(folder, name + ".cmd"))


def last_line(folder, name):
    """The last non-empty line of NAME.log that is not a progress line ("[...")."""
    lines = [line.strip() for line in text_of(folder, name + ".log").splitlines()
             if line.strip() and not line.startswith("[")]
    return lines[-1] if lines else ""


def elastic_coldstart_table(folder, out):
    out.append("### Time to SERVING: 1 vs 4 workers (resnet50)\n")
    out.append("`kiln-bench coldstart`, median (min-max) over the runs. With the warm template each "
               "worker is forked from a process that warmed the model once and confirms every shape "
               "with one call; without it (`--warm_template=off`, the baseline) every worker runs the "
               "whole warmup itself. Targets (warm template on): 4 workers SERVING within 1.3x the "
               "time of 1 worker, and in about 5 s.\n")
    out.append("| warm template | 1 worker ready | 4 workers ready | 4 / 1 | target 4 / 1 <= 1.3x | "
               "4 workers, target about 5 s | PSS MB, 4 workers |")
    out.append("|---|---|---|---|---|---|---|")
    for template in ("on", "off"):
        names = [f"elastic-coldstart-w{workers}-template-{template}" for workers in (1, 4)]
        (one, why_one), (four, why_four) = maybe(folder, names[0]), maybe(folder, names[1])
        if one is None or four is None:
            missing = why_missing(folder, names[0], why_one) if one is None else \
                why_missing(folder, names[1], why_four)
            out.append(f"| {template} | {missing} | | | | | |")
            continue
        r = four["ready_ms"]["median"] / one["ready_ms"]["median"] if one["ready_ms"]["median"] else 0
        met = verdict(r <= 1.3) if template == "on" else "baseline"
        out.append(f"| {template} | {spread(one['ready_ms'], ' ms')} | {spread(four['ready_ms'], ' ms')} | "
                   f"{r:.2f}x | {met} | {four['ready_ms']['median'] / 1000:.1f} s | "
                   f"{spread(four['pss_mb'])} |")
    out.append("")
    if has_run(folder, "elastic-coldstart-w4-template-off"):
        out.append("Command: `" + command(folder, "elastic-coldstart-w4-template-off") + "` (and "
                   "`--workers=1`, and `--warm_template=on`).\n")


def first_new_cell(run):
    """The new worker's first request: its compute time over the before p50, and the worker's CPU
    time over the before CPU p50 (runs from before elastic reported it have none)."""
    first = run.get("first_new")
    if not first:
        return "none served one", None
    cpu = f"; CPU {first['cpu_ratio']:.2f}x" if first.get("cpu_ratio") else ""
    return (f"{first['compute_ms']:.2f} ms = {first['compute_ratio']:.2f}x "
            f"(before p50 {run['before_compute_p50_ms']:.2f} ms{cpu}); "
            f"latency {first['latency_ms']:.1f} ms",
            first["compute_ratio"])


def health_cell(run):
    h = run["health"]
    return (f"{h['not_serving']} of {h['checks']} (longest gap {h['longest_gap_ms']:.0f} ms)",
            h["not_serving"] == 0)


def replacement_cell(run):
    if run["replacement_ms"] is None:
        return f"none: {run['replacement_error']}", None
    return f"{run['replacement_ms']:.0f} ms", run["replacement_ms"]


def phase_cell(phase):
    seconds = (phase["to_ms"] - phase["from_ms"]) / 1000
    return f"{phase['p50_ms']:.1f} / {phase['p99_ms']:.1f} ms ({phase['count']} req in {seconds:.1f} s)"


def template_runs(folder, prefix, columns, out):
    """Yields (template, run) of <prefix>-on and <prefix>-off, in that order; for one that is
    missing, appends its row of `columns` cells (saying why) to `out` instead."""
    for template in ("on", "off"):
        name = f"{prefix}-{template}"
        run, reason = maybe(folder, name)
        if run is None:
            out.append(f"| {template} | {why_missing(folder, name, reason)} |" + " |" * (columns - 2))
            continue
        yield template, run


def elastic_kill_table(folder, out):
    out.append("### kill -9 of one of 4 workers under load (resnet50, 6 req/s)\n")
    out.append("`kiln-bench elastic --event=kill`: Poisson arrivals; SIGKILL to one worker; the "
               "WarmupReport is polled every 20 ms until it lists a new warm worker, and the model's "
               "health is checked every 10 ms through the whole load. \"first request\" is the first "
               "request the replacement served (each response names its worker): its compute time "
               "against the compute p50 of every worker before the kill, and (\"CPU\") the worker's "
               "CPU time for it against their CPU time p50 (near 1.0 while the compute ratio is "
               "higher, it waited for a CPU; it did not run cold). Targets (warm template on): "
               "replacement warm <= 0.8 s after the kill, health SERVING throughout, its first request "
               "<= 1.1x the steady p50.\n")
    out.append("| warm template | replacement warm | target <= 0.8 s | health checks not SERVING | "
               "target 0 | p50 / p99 before | p50 / p99 after | first request of the replacement: "
               "compute | target <= 1.1x | errors |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for template, run in template_runs(folder, "elastic-kill-template", 10, out):
        replaced, ms = replacement_cell(run)
        health, healthy = health_cell(run)
        first, first_ratio = first_new_cell(run)
        on = template == "on"
        out.append(
            f"| {template} | {replaced} | {verdict(ms is not None and ms <= 800) if on else 'baseline'} | "
            f"{health} | {verdict(healthy) if on else 'baseline'} | {phase_cell(run['phases'][0])} | "
            f"{phase_cell(run['phases'][1])} | {first} | "
            f"{verdict(first_ratio is not None and first_ratio <= 1.1) if on else 'baseline'} | "
            f"{run['errors']} |")
    out.append("")
    if has_run(folder, "elastic-kill-template-on"):
        out.append("Command: `" + command(folder, "elastic-kill-template-on") + "` (and "
                   "`--warm_template=off`).\n")


def elastic_ttin_table(folder, out):
    out.append("### TTIN under load (resnet18 sized to 1 CPU of 2, 70 % of its capacity)\n")
    capacity = None
    if os.path.exists(os.path.join(folder, "elastic-capacity-resnet18-cpus1.json")):
        capacity = load(folder, "elastic-capacity-resnet18-cpus1")["throughput_rps"]
    out.append("`kiln-bench elastic --event=ttin`: the server runs with `--cpus=1` (one worker of one intra-op "
               "thread, as a replica sized to 1 CPU) on this 2-CPU machine; capacity is that worker's closed-loop throughput "
               "at concurrency 4" + (f" ({capacity:.1f} req/s)" if capacity is not None else "") +
               "; Poisson arrivals at 70 % of it; SIGTTIN to the master adds a second worker, which has the other CPU. The tail "
               "latency in the 10 s after the signal (less where the load ends sooner, as with "
               "`--quick`) against before it, while the new worker warms beside the one that serves; "
               "\"first request\" and \"CPU\" as for kill -9 above. Targets (warm template on): p99 after / before <= 1.2, health "
               "SERVING throughout, the new worker's first request <= 1.1x the steady p50.\n")
    out.append("| warm template | rate | p50 / p99 before | p50 / p99 after | p99 after / before | "
               "target <= 1.2 | new worker warm | health checks not SERVING | target 0 | "
               "first request of the new worker: compute | target <= 1.1x | errors |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for template, run in template_runs(folder, "elastic-ttin-template", 12, out):
        replaced, _ = replacement_cell(run)
        health, healthy = health_cell(run)
        first, first_ratio = first_new_cell(run)
        on = template == "on"
        ratio_ok = run["phases"][0]["count"] > 0 and run["p99_ratio"] <= 1.2
        out.append(
            f"| {template} | {run['rate']:.1f} req/s | {phase_cell(run['phases'][0])} | "
            f"{phase_cell(run['phases'][1])} | {run['p99_ratio']:.2f}x | "
            f"{verdict(ratio_ok) if on else 'baseline'} | {replaced} | {health} | "
            f"{verdict(healthy) if on else 'baseline'} | {first} | "
            f"{verdict(first_ratio is not None and first_ratio <= 1.1) if on else 'baseline'} | "
            f"{run['errors']} |")
    out.append("")
    if has_run(folder, "elastic-ttin-template-on"):
        out.append("Commands: `" + command(folder, "elastic-capacity-resnet18-cpus1") + "` (against a "
                   "server with `--workers=1 --cpus=1`), then `" + command(folder, "elastic-ttin-template-on") +
                   "` (and `--warm_template=off`).\n")


def memory_stats(folder):
    stats = {}
    for line in text_of(folder, "elastic-mem.stats").splitlines():
        name, _, value = line.partition(" ")
        stats[name] = value.strip()
    return stats


def elastic_memory_table(folder, out):
    out.append("### A 900 MB memory cgroup (resnet50, 4 workers)\n")
    skipped = text_of(folder, "elastic-mem.skipped")
    if skipped:
        out.append(f"Skipped on this machine: {skipped}.\n")
        return
    if not has_run(folder, "elastic-mem-coldstart"):
        out.append("Not run.\n")
        return
    out.append("A cgroup with `memory.limit_in_bytes` = 900000000 (and `memory.swappiness` 0). `kiln-bench coldstart "
               "--cgroup` starts the server in it with 4 workers and sends it requests; then a server "
               "started in it is asked to scale to 40 workers (`kiln-bench scale`), which must be "
               "refused before any worker starts, and must keep serving. The kernel's counters cover "
               "the cgroup's whole life (both servers). Targets: 4 workers serve, the scale past what "
               "fits is refused, no OOM kill.\n")
    out.append("| check | result | target |")
    out.append("|---|---|---|")
    cold, reason = maybe(folder, "elastic-mem-coldstart")
    if cold is None:
        out.append(f"| 4 workers start and serve (coldstart) | failed: {reason} | **missed** |")
    else:
        out.append(f"| 4 workers start and serve (coldstart) | SERVING after "
                   f"{cold['ready_ms']['median']:.0f} ms, steady p50 {cold['steady_p50_ms']['median']:.1f} ms, "
                   f"PSS {cold['pss_mb']['median']:.0f} MB | met |")
    server_failed = text_of(folder, "elastic-mem-server.failed")
    if server_failed:
        out.append(f"| server with 4 workers in the cgroup | not SERVING: {' '.join(server_failed.split())[-300:]} "
                   f"| **missed** |")
    if has_run(folder, "elastic-mem-scale"):
        line = last_line(folder, "elastic-mem-scale")
        refused = (os.path.exists(os.path.join(folder, "elastic-mem-scale.failed")) and
                   "RESOURCE_EXHAUSTED" in line)
        out.append(f"| scale to 40 workers | {'refused' if refused else 'not refused'}: `{line}` | "
                   f"{verdict(refused)} |")
    if has_run(folder, "elastic-mem-health"):
        line = last_line(folder, "elastic-mem-health")
        out.append(f"| health of resnet50 after the refused scale | {line} | "
                   f"{verdict(line == 'SERVING')} |")
    if os.path.exists(os.path.join(folder, "elastic-mem-warmup.json")):
        for model in load(folder, "elastic-mem-warmup").get("models", []):
            warm, target = model.get("warm_workers", 0), model.get("target_workers", 0)
            out.append(f"| warm workers after it | {warm} of {target} | {verdict(warm == 4 and target == 4)} |")
    stats = memory_stats(folder)
    if "max_usage_bytes" in stats:
        out.append(f"| peak memory of the cgroup (kernel) | {int(stats['max_usage_bytes']) / 1e6:.0f} MB "
                   f"of 900 MB | |")
    if "failcnt" in stats:
        out.append(f"| times the limit was hit (failcnt) | {stats['failcnt']} | |")
    if "oom_kill" in stats:
        out.append(f"| OOM kills (oom_kill) | {stats['oom_kill']} | {verdict(stats['oom_kill'] == '0')} |")
    out.append("")
    out.append("Commands: `" + command(folder, "elastic-mem-coldstart") + "`" +
               ("; `" + command(folder, "elastic-mem-scale") + "` against a server started in the "
                "cgroup with `--workers=4`" if has_run(folder, "elastic-mem-scale") else "") + ".\n")


def elastic_tables(folder, out):
    out.append("## Elastic warm pool\n")
    out.append("Adding and replacing workers while serving: how fast a new worker is warm, what the "
               "serving ones pay meanwhile, and that memory bounds are kept. MB are 10^6 bytes.\n")
    elastic_coldstart_table(folder, out)
    elastic_kill_table(folder, out)
    elastic_ttin_table(folder, out)
    elastic_memory_table(folder, out)


def reload_row(folder, name, label, out):
    if not has_run(folder, name):
        why_missing(folder, name, label)
        return
    run = load(folder, name)
    phases = {p["name"]: p for p in run["phases"]}
    before, during, after = phases["before"], phases["during"], phases["after"]
    served = ", ".join(f"v{v} {n}" for v, n in sorted(after["versions"].items())) or "none"
    bad = run["bad_version"]
    target = (run["p99_ratio"] <= 1.2 and run["errors"] == 0 and run["cold_shape_hits"] == 0 and
              (run["new_version_responses"] == 0 if bad else run["reload_outcome"] == "OK") and
              all(run["others_kept_workers"].values()))
    out.append(f"| {label} | {run['rate']:.1f} | {before['p99_ms']:.1f} | {during['p99_ms']:.1f} | "
               f"{after['p99_ms']:.1f} | {run['p99_ratio']:.2f}x | {run['errors']} | "
               f"{run['cold_shape_hits']} | {run['switch_ms'] / 1000:.1f} s | {served} | "
               f"{run['pss_before_kb'] / 1000:.0f} / {run['pss_peak_kb'] / 1000:.0f} / "
               f"{run['pss_after_kb'] / 1000:.0f} | "
               f"{'yes' if all(run['others_kept_workers'].values()) else 'NO'} | {verdict(target)} |")


def reload_tables(folder, out):
    out.append("## Reload: a new version under load (make-before-break)\n")
    out.append("A repository of resnet18 (rolled out), mlp and textcls (left alone). An open-loop "
               "Poisson load on resnet18 at 70 % of the capacity `kiln-bench reload` measured first; "
               "`--before_s` into it, version 2 appears and a reload is asked for. p99 in ms, from "
               "each request's scheduled time, per phase: before the request, during the reload, "
               "after the switch. Switch: from the request to the switch (the RPC's answer; with "
               "SIGHUP, ModelMetadata listing only version 2, or the index giving the reason). "
               "Tree PSS in MB (10^6 bytes): before / peak during the reload / at the end. Others "
               "kept: mlp's and textcls's workers have the same pids after. Target: p99 during / "
               "before <= 1.2, no failed request, no cold-shape hit; a bad version never serves.\n")
    out.append("| run | req/s | p99 before | p99 during | p99 after | during / before | errors | "
               "cold | switch | versions after | PSS MB | others kept | target |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    reload_row(folder, "reload-good-rpc", "version 2 (RepositoryModelLoad)", out)
    reload_row(folder, "reload-good-hup", "version 2 (SIGHUP)", out)
    reload_row(folder, "reload-bad-rpc", "bad version 2: not TorchScript (RepositoryModelLoad)", out)
    out.append("")
    for name in ("reload-good-rpc", "reload-good-hup", "reload-bad-rpc"):
        if has_run(folder, name):
            run = load(folder, name)
            out.append(f"- `{command(folder, name)}`: reload {run['reload_outcome']}")
    out.append("")


def scrape_tables(folder, out):
    out.append("## Metrics: scraping /metrics every 100 ms under load\n")
    out.append("One kiln-server (the four demo models) with its metrics endpoint; an open-loop "
               "Poisson load on one model at 70 % of the capacity `kiln-bench scrape` measured "
               "first, in rounds of two 10 s phases: without scraping, then with a `GET /metrics` "
               "every 100 ms on one kept-alive connection (what Prometheus with `scrape_interval: "
               "100ms` does). Both phases of a round send the same Poisson schedule. p99 in ms, "
               "from each request's scheduled time, pooled over the phases of each kind, and the "
               "median over the rounds of each round's ratio (one bad phase moves it less). "
               "Target: both ratios <= 1.05.\n")
    out.append("| model | req/s | rounds | p99 without | p99 with | with / without: pooled | "
               "median of rounds | errors | scrapes | scrape p50 / p99 ms | scrape size | target |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for model in ("mlp", "resnet18"):
        name = "scrape-" + model
        if not has_run(folder, name) or not os.path.exists(os.path.join(folder, name + ".json")):
            out.append(f"| {model} | {why_missing(folder, name, '')} |" + " |" * 10)
            continue
        run = load(folder, name)
        phases = {p["name"]: p for p in run["phases"]}
        off, on = phases["off"], phases["on"]
        errors = sum(off["errors"].values()) + sum(on["errors"].values())
        median = run["p99_median_round_ratio"]
        target = (run["p99_ratio"] <= 1.05 and median <= 1.05 and errors == 0 and
                  run["scrape_failures"] == 0)
        out.append(f"| {model} | {run['rate']:.1f} | {run['rounds']} | {off['p99_ms']:.2f} | "
                   f"{on['p99_ms']:.2f} | {run['p99_ratio']:.2f}x | {median:.2f}x | {errors} | "
                   f"{run['scrapes']} "
                   f"({run['scrape_failures']} failed) | {run['scrape_p50_ms']:.2f} / "
                   f"{run['scrape_p99_ms']:.2f} | {run['scrape_bytes'] / 1000:.1f} kB | "
                   f"{verdict(target)} |")
    out.append("")
    for model in ("mlp", "resnet18"):
        if has_run(folder, "scrape-" + model):
            run = load(folder, "scrape-" + model)
            per_phase = ", ".join(f"{p['name']} {p['p99_ms']:.1f}" for p in run["phases"][2:])
            out.append(f"- `{command(folder, 'scrape-' + model)}`: p99 per phase (ms): {per_phase}")
    out.append("")


def lb_tables(folder, out):
    model = "resnet18"
    runs = {w: f"lb-{model}-warmup-{w}" for w in ("on", "off")}
    out.append(f"## Behind nginx: scale-out 1 -> 3 replicas and a blue/green switch ({model})\n")
    out.append("`kiln-bench lb` (driven by `scripts/lb_bench.sh`): Debian's nginx as the gRPC load "
               "balancer (`grpc_pass`, keepalive, passive failover; `deploy/nginx/kiln-grpc.conf`) "
               "in front of kiln replicas on loopback, under a steady open-loop load (constant "
               "arrivals, so that a second's p95 moves with the replicas, not with Poisson "
               "bursts). One replica serves alone (steady); then 2 more start and each joins "
               "nginx's upstream (a graceful reload) once its health says SERVING; 10 s later, a "
               "blue/green switch: 3 green replicas start, each passes health and 20 calls sent "
               "to it directly, nginx is switched to them, its old worker exits, and blue is "
               "drained by SIGTERM. Placement: kiln-bench and nginx on CPU 0 with the first "
               "replica (`taskset -c 0`), the later replicas on CPU 1 (`--cpus=0,1,1`), so that "
               "the starting replicas cannot take the serving one's CPU; green replica i goes "
               "where blue replica i was. Latency from each request's scheduled time; a second "
               "holds 15 requests, so its p95 is its slowest. Targets: every second of the "
               "scale-out (from the start of the new replicas to the blue/green switch) p95 / "
               "steady p95 <= 1.1 with kiln's warmup; no failed request across the reloads and "
               "the switch.\n")
    speeds = []
    for cpu in (0, 1):
        name = f"lb-{model}-forward-cpu{cpu}"
        if os.path.exists(os.path.join(folder, name + ".json")):
            speeds.append(f"CPU {cpu} {load(folder, name)['latency_ms']['p50']:.1f} ms")
    if speeds:
        out.append(f"The CPUs' own speed just before (`kiln-forward-bench --model={model}` pinned "
                   f"to each, p50 of one forward pass): {', '.join(speeds)}.\n")
    out.append("| replicas | steady p95 | worst scale-out second: p95 (/ steady) | worst second "
               "after the join | new replicas SERVING after | failed requests (whole run) | "
               "blue/green: green SERVING, checked, switched | blue exits | target |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for warmup, name in runs.items():
        label = "kiln's warmup" if warmup == "on" else "`--warmup=off`"
        if not has_run(folder, name) or not os.path.exists(os.path.join(folder, name + ".json")):
            out.append(f"| {label} | {why_missing(folder, name, '')} |" + " |" * 7)
            continue
        run = load(folder, name)
        ev = run["events_ms"]
        steady = run["phases"][0]["p95_ms"]
        worst_s, joined_s = run["worst_scale_out_second"], run["worst_joined_second"]
        worst = run["seconds"][worst_s]["p95_ms"] if worst_s >= 0 else 0
        joined = run["seconds"][joined_s]["p95_ms"] if joined_s >= 0 else 0
        ok = run["worst_scale_out_p95_ratio"] <= 1.1 and run["errors"] == 0
        target = verdict(ok) if warmup == "on" else ("none failed" if run["errors"] == 0
                                                     else "**failed requests**")
        bg = (f"{(ev['green_serving'] - ev['green_started']) / 1000:.1f} s, "
              f"{(ev['green_checked'] - ev['green_started']) / 1000:.1f} s, "
              f"{(ev['switched'] - ev['green_started']) / 1000:.1f} s"
              if ev.get("switched") is not None else "-")
        out.append(f"| {label} | {steady:.1f} ms | {worst:.1f} ms ({run['worst_scale_out_p95_ratio']:.2f}x, "
                   f"second {worst_s}) | {joined:.1f} ms ({run['worst_joined_p95_ratio']:.2f}x) | "
                   f"{(ev['scale_serving'] - ev['scale_started']) / 1000:.1f} s | {run['errors']} | "
                   f"{bg} | {', '.join(run['blue_exits'])} | {target} |")
    out.append("")
    for warmup, name in runs.items():
        if not has_run(folder, name) or not os.path.exists(os.path.join(folder, name + ".json")):
            continue
        run = load(folder, name)
        ev = run["events_ms"]
        steady = run["phases"][0]["p95_ms"]
        per_second = ", ".join(
            f"{s['p95_ms'] / steady:.2f}" for s in run["seconds"] if s["scale_out"])
        phases = "; ".join(f"{p['name']} {p['p50_ms']:.1f} / {p['p95_ms']:.1f} / {p['p99_ms']:.1f}"
                           for p in run["phases"])
        out.append(f"- `{command(folder, name)}`:")
        out.append(f"  - p95 / steady p95 in each second of the scale-out (new replicas started at "
                   f"{ev['scale_started'] / 1000:.1f} s, in nginx at {ev['scale_joined'] / 1000:.1f} s): "
                   f"{per_second}")
        out.append(f"  - p50 / p95 / p99 ms by phase: {phases}")
    out.append("")


# Which step of scripts/bench.sh writes each section's results (for --steps).
SECTION_STEPS = {"startup_tables": 1, "warmup_table": 2, "open_loop_table": 3, "overhead_table": 4,
                 "batching_table": 13, "cpu_table": 5, "scaleout_table": 6, "threads_table": 7,
                 "wait_table": 8, "elastic_tables": 9, "reload_tables": 10, "scrape_tables": 11,
                 "lb_tables": 12, "naive_table": 14}


def guarded(section, folder, out):
    """Appends SECTION's output, or, where its step left no results in the folder (not run, or
    skipped by bench.sh --steps), its heading and "not measured" instead of a crash."""
    part = []
    try:
        section(folder, part)
    except FileNotFoundError as error:
        heading = next((line for line in part if line.startswith("## ")),
                       f"## {section.__name__}\n")
        missing = os.path.basename(error.filename or "?")
        step = SECTION_STEPS.get(section.__name__, "N")
        part = [heading, f"Not measured: {folder}/ has no {missing} (`scripts/bench.sh "
                         f"--steps={step}` measures it).\n"]
    out.extend(part)


def partial_runs_note(folder):
    """What bench.sh --steps measured again after the full run, from partial-runs.txt."""
    runs = [line for line in text_of(folder, "partial-runs.txt").splitlines() if line.strip()]
    if not runs:
        return []
    return ["Measured again alone since (`scripts/bench.sh --steps`): " + "; ".join(runs) +
            ". The other sections are from the run before.", ""]


def main():
    for flag, section in (("--only-reload", reload_tables), ("--only-scrape", scrape_tables),
                          ("--only-lb", lb_tables), ("--only-naive", naive_table)):
        if len(sys.argv) > 2 and sys.argv[1] == flag:
            out = []
            section(sys.argv[2], out)
            print("\n".join(out))
            return
    folder = sys.argv[1] if len(sys.argv) > 1 else "bench-results"
    out = ["# kiln benchmarks", "",
           "Written by `scripts/bench.sh` on " + datetime.date.today().isoformat() + ". Every number "
           "below was printed by `kiln-bench` or `kiln-forward-bench` (or, for the memory cgroup, "
           "read from the kernel's counters by `bench.sh`) in one run (raw JSON in "
           "`bench-results/`); absolute times vary between machines, so compare the ratios.", "",
           "Machine: " + machine() + ".", ""]
    out += partial_runs_note(folder)
    for section in (startup_tables, warmup_table, open_loop_table, overhead_table, batching_table,
                    naive_table, cpu_table, scaleout_table, threads_table, wait_table,
                    elastic_tables, reload_tables, scrape_tables, lb_tables):
        guarded(section, folder, out)
    print("\n".join(out))


if __name__ == "__main__":
    main()
