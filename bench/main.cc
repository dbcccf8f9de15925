// kiln-bench: kiln's own Open Inference Protocol client. A tiny dispatcher: the first argument
// names the sub-command, which parses the rest itself (bench/args.h). A new sub-command is one
// file pair plus one line in kSubcommands.
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "bench/args.h"
#include "bench/coldstart_command.h"
#include "bench/elastic_command.h"
#include "bench/health_command.h"
#include "bench/infer_command.h"
#include "bench/lb_command.h"
#include "bench/load_command.h"
#include "bench/reload_command.h"
#include "bench/scale_command.h"
#include "bench/scaleout_command.h"
#include "bench/scrape_command.h"
#include "bench/warmup_command.h"

namespace {

struct Subcommand {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<std::string>& args);
};

constexpr Subcommand kSubcommands[] = {
    {"infer", "send one ModelInfer (random inputs, text, or safetensors), print the outputs",
     kiln::bench::RunInferCommand},
    {"health", "grpc.health.v1 Check or Watch, like grpc_health_probe",
     kiln::bench::RunHealthCommand},
    {"coldstart", "start kiln-server N times: time to SERVING, first vs steady latency, PSS",
     kiln::bench::RunColdstartCommand},
    {"load", "open- or closed-loop load on one model: rate, throughput, latency percentiles",
     kiln::bench::RunLoadCommand},
    {"warmup", "KilnService/WarmupReport: startup timeline, per-shape warmup, serving counters",
     kiln::bench::RunWarmupCommand},
    {"scaleout", "replica B starts beside loaded replica A: A's tail latency while B warms",
     kiln::bench::RunScaleoutCommand},
    {"scale", "KilnService/SetWorkerCount: one model's worker count on a running server",
     kiln::bench::RunScaleCommand},
    {"elastic", "one TTIN or worker kill under load: tail latency, replacement time, health",
     kiln::bench::RunElasticCommand},
    {"reload", "a new model version rolled out under load: latency per second, errors, switch",
     kiln::bench::RunReloadCommand},
    {"scrape", "Prometheus scraping every 100 ms under load: p99 with and without scraping",
     kiln::bench::RunScrapeCommand},
    {"lb", "replicas behind nginx: scale-out 1 -> N and blue/green under load, p95 per second",
     kiln::bench::RunLbCommand},
};

void PrintUsage(std::ostream& out) {
  out << "kiln-bench: a command-line client for kiln-server (Open Inference Protocol over gRPC)\n"
         "\n"
         "usage: kiln-bench <command> [--flag=value ...]\n"
         "       kiln-bench <command> --help   (the command's flags, defaults and examples)\n"
         "\n"
         "commands:\n";
  for (const Subcommand& command : kSubcommands) {
    const std::string name = command.name;
    out << "  " << name << std::string(name.size() < 11 ? 11 - name.size() : 1, ' ')
        << command.summary << "\n";
  }
  out << "\n"
         "exit status: 0 success, 1 failure (RPC error, not SERVING), 2 bad usage\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(std::cerr);
    return kiln::bench::kExitUsage;
  }
  const absl::string_view name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    PrintUsage(std::cout);
    return kiln::bench::kExitOk;
  }
  const std::vector<std::string> args(argv + 2, argv + argc);
  for (const Subcommand& command : kSubcommands) {
    if (name == command.name) return command.run(args);
  }
  std::cerr << "kiln-bench: unknown command '" << name << "'\n\n";
  PrintUsage(std::cerr);
  return kiln::bench::kExitUsage;
}
