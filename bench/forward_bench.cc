// kiln-forward-bench: the in-process baseline of kiln's per-request overhead. It loads a model
// with the same backend the workers use (worker/torch_model.h: mapped weights, NoGradGuard),
// warms it on the calling thread, then times forward passes with no gRPC, no IPC and no queue.
// scripts/bench.sh subtracts its p50 from kiln-bench load's round-trip p50.
//
// A separate binary from kiln-bench so that the client does not link LibTorch.
#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/args.h"
#include "bench/latency_stats.h"
#include "common/clock.h"
#include "common/model_config_loader.h"
#include "common/openmp_wait.h"
#include "nlohmann/json.hpp"
#include "worker/torch_model.h"
#include "worker/warmup.h"

namespace kiln::bench {
namespace {

int Run(const std::vector<std::string>& args) {
  std::string repository = "models", model_name, json_path;
  int64_t batch = 1, seq = 16, threads = 1, warmup_calls = 20, calls = 200;
  FlagSet flags("kiln-forward-bench --model=NAME [flags]",
                "Times forward passes of one model in this process, with kiln's LibTorch backend "
                "and nothing else (no gRPC, no IPC), after warming it on the same thread. Prints "
                "the latency summary; --json writes it for scripts/bench.sh. OpenMP threads wait "
                "as in kiln-server: passively, unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set.",
                {"kiln-forward-bench --model=mlp --batch=1 --threads=1",
                 "kiln-forward-bench --model=resnet18 --batch=4 --calls=50 --json=/tmp/f.json"});
  flags.AddString("model_repository", &repository, "model repository");
  flags.AddString("model", &model_name, "model name (required)");
  flags.AddInt("batch", &batch, "batch size (when the model batches)");
  flags.AddInt("seq", &seq, "length of variable (-1) dims");
  flags.AddInt("threads", &threads,
               "intra-op threads (a worker's automatic default is its share of the CPUs: 1 when "
               "the count is automatic too)");
  flags.AddInt("warmup_calls", &warmup_calls, "untimed calls first");
  flags.AddInt("calls", &calls, "timed calls");
  flags.AddString("json", &json_path, "write the summary here as JSON");
  if (std::optional<int> exit = ParseFlagsOrExit(&flags, "forward", args, std::cout, std::cerr)) {
    return *exit;
  }
  if (model_name.empty() || batch < 1 || seq < 1 || threads < 1 || warmup_calls < 0 ||
      calls < 1) {
    std::cerr << "kiln-forward-bench: --model is required; --batch, --seq, --threads and "
                 "--calls must be >= 1 (see --help)\n";
    return kExitUsage;
  }

  absl::StatusOr<ModelSpec> spec = LoadModel(repository + "/" + model_name);
  if (!spec.ok()) {
    std::cerr << "kiln-forward-bench: " << spec.status().message() << "\n";
    return kExitFailure;
  }
  absl::StatusOr<std::unique_ptr<TorchModel>> model = TorchModel::Load(*spec);
  if (!model.ok()) {
    std::cerr << "kiln-forward-bench: " << model.status().message() << "\n";
    return kExitFailure;
  }
  TorchModel::SetIntraOpThreads(static_cast<int>(threads));
  const Shape shape{static_cast<int32_t>(batch), static_cast<int32_t>(seq)};
  absl::StatusOr<std::vector<Tensor>> inputs = MakeWarmupInputs(spec->config, shape, 1);
  if (!inputs.ok()) {
    std::cerr << "kiln-forward-bench: " << inputs.status().message() << "\n";
    return kExitFailure;
  }
  std::vector<TensorView> views;
  for (const Tensor& input : *inputs) views.push_back(input.view());

  std::vector<double> latencies;
  for (int64_t call = 0; call < warmup_calls + calls; ++call) {
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::vector<Tensor>> outputs = (*model)->Forward(views);
    const double ms = MillisecondsSince(start);
    if (!outputs.ok()) {
      std::cerr << "kiln-forward-bench: " << outputs.status().message() << "\n";
      return kExitFailure;
    }
    if (call >= warmup_calls) latencies.push_back(ms);
  }
  const LatencySummary summary = Summarize(latencies);
  std::cout << absl::StrFormat("%s batch %d, %d thread(s): %s\n", model_name, batch, threads,
                               FormatSummary(summary));
  if (!json_path.empty()) {
    const nlohmann::json json = {
        {"model", model_name},
        {"batch", batch},
        {"threads", threads},
        {"latency_ms",
         {{"count", summary.count}, {"min", summary.min}, {"mean", summary.mean},
          {"p50", summary.p50}, {"p90", summary.p90}, {"p95", summary.p95},
          {"p99", summary.p99}, {"max", summary.max}}}};
    std::ofstream(json_path) << json.dump(2) << "\n";
  }
  return kExitOk;
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  kiln::EnsurePassiveOpenMpWait(argv);  // as kiln-server does, so that both wait alike
  return kiln::bench::Run(std::vector<std::string>(argv + 1, argv + argc));
}
