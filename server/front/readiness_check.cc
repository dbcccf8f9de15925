#include "server/front/readiness_check.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/clock.h"
#include "common/sample_text.h"
#include "common/shape.h"
#include "common/stats.h"
#include "common/status_macros.h"
#include "common/warmup_inputs.h"
#include "server/codec/infer_codec.h"

namespace kiln {
namespace {

// Per request: generous, since a worker may still be settling its caches; a timeout is an error.
constexpr int kRequestTimeoutSeconds = 30;

bool Serves(const WorkerInfo& worker, const ModelSpec& spec) { return worker.spec.get() == &spec; }

// The median over the workers of `spec`'s version of their steady CPU time at `shape`.
double SteadyCpuMs(const ModelSpec& spec, const Shape& shape,
                   const std::vector<WorkerInfo>& workers) {
  std::vector<double> steady;
  for (const WorkerInfo& worker : workers) {
    if (!Serves(worker, spec)) continue;
    for (const internal::ShapeWarmup& warmed : worker.warmup.shapes()) {
      if (warmed.batch_size() == shape.batch_size &&
          warmed.sequence_length() == shape.sequence_length) {
        steady.push_back(warmed.steady_cpu_ms());
      }
    }
  }
  return Median(steady);
}

// Checks one model with `request`; `not_judged` says why its CPU time is not judged ("": it is).
// `threads`: its workers' intra-op threads.
ReadinessResult CheckModel(inference::GRPCInferenceService::Stub& stub, const ModelSpec& spec,
                           inference::ModelInferRequest request, double steady_cpu_ms,
                           const std::string& not_judged, int threads) {
  const ReadinessConfig& readiness = spec.config.readiness();
  ReadinessResult result;
  result.model = spec.key();
  result.not_judged = not_judged;
  result.requests = readiness.check_requests();
  result.steady_cpu_ms = steady_cpu_ms;
  result.factor = readiness.max_p95_factor();
  // A worker of several threads is measured by its whole process's CPU time, whose noise per call
  // (the pool's threads waking and going back to sleep) grows with the threads.
  result.allowance_ms = readiness.check_allowance_ms() * std::max(threads, 1);
  AskForTiming(&request);

  std::mutex mu;
  std::vector<double> latencies;
  std::vector<double> cpu;
  int next = 0;
  auto sender = [&] {
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (next >= result.requests) return;
        ++next;
      }
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(kRequestTimeoutSeconds));
      inference::ModelInferResponse response;
      const auto start = std::chrono::steady_clock::now();
      const grpc::Status status = stub.ModelInfer(&context, request, &response);
      const double ms = MillisecondsSince(start);
      std::lock_guard<std::mutex> lock(mu);
      if (status.ok()) {
        latencies.push_back(ms);
        cpu.push_back(ReadTiming(response).compute_cpu_ms.value_or(0));
      } else if (result.errors++ == 0) {
        result.first_error = status.error_message();
      }
    }
  };
  std::vector<std::thread> senders;
  for (int i = 0; i < std::max(1, readiness.check_concurrency()); ++i) senders.emplace_back(sender);
  for (std::thread& thread : senders) thread.join();
  for (std::vector<double>* values : {&latencies, &cpu}) std::sort(values->begin(), values->end());
  result.p95_ms = latencies.empty() ? 0 : NearestRankPercentile(latencies, 95);
  result.cpu_p95_ms = cpu.empty() ? 0 : NearestRankPercentile(cpu, 95);
  result.cpu_median_ms = cpu.empty() ? 0 : NearestRankPercentile(cpu, 50);
  result.reference_cpu_ms = ReferenceCpuMs(result.cpu_median_ms, steady_cpu_ms);
  result.limit_ms = result.factor * result.reference_cpu_ms + result.allowance_ms;
  return result;
}

}  // namespace

double ReferenceCpuMs(double median_cpu_ms, double steady_cpu_ms) {
  return std::clamp(median_cpu_ms, steady_cpu_ms, kMaxCheckSlowdown * steady_cpu_ms);
}

std::string ReadinessResult::Describe() const {
  if (!skipped.empty()) return absl::StrCat(model, ": not checked (", skipped, ")");
  const std::string judged =
      !not_judged.empty() ? absl::StrCat("not judged (", not_judged, ")")
                          : absl::StrFormat(
                                "%s limit %.2f ms (%.1f x reference CPU %.2f ms + %.1f ms; steady "
                                "%.2f ms)",
                                cpu_median_ms <= limit_ms ? "<=" : ">", limit_ms, factor,
                                reference_cpu_ms, allowance_ms, steady_cpu_ms);
  std::string text = absl::StrFormat(
      "%s: %d requests through the whole path, compute CPU median %.2f ms %s, CPU p95 %.2f ms; "
      "wall p95 %.2f ms: %s",
      model, requests, cpu_median_ms, judged, cpu_p95_ms, p95_ms, passed() ? "passed" : "FAILED");
  if (errors > 0) absl::StrAppend(&text, "; ", errors, " errors, the first: ", first_error);
  return text;
}

absl::StatusOr<std::vector<ReadinessResult>> RunReadinessCheck(
    inference::GRPCInferenceService::Stub& stub, const std::vector<SharedSpec>& specs,
    const std::vector<WorkerInfo>& workers, bool warmup, bool threads_spin) {
  std::vector<ReadinessResult> results;
  for (const SharedSpec& shared : specs) {
    const ModelSpec& spec = *shared;
    // Why this model's CPU time cannot be judged, or "".
    int threads = 1;
    for (const WorkerInfo& worker : workers) {
      if (Serves(worker, spec)) {
        threads = std::max(threads, worker.warmup.intra_op_threads());
      }
    }
    const std::string not_judged =
        threads_spin && threads > 1
            ? absl::StrCat("its workers' ", threads,
                           " intra-op threads spin while they wait (OMP_WAIT_POLICY or "
                           "GOMP_SPINCOUNT), so their CPU time grows with the load around; only "
                           "errors are judged")
            : "";
    ReadinessResult skipped;
    skipped.model = spec.key();
    if (!warmup || !spec.config.warmup().enabled()) {
      skipped.skipped = "warmup is off";
      results.push_back(skipped);
      continue;
    }
    const Shape shape = WarmupShapes(spec.config).front();
    const std::string version = std::to_string(spec.version);
    if (spec.config.has_tokenizer()) {
      // Text through the tokenizer: sample text short enough for the smallest length bucket (a
      // word is often several sub-word pieces, and a longer text would run, and be timed, at a
      // longer length than the steady time it is compared with).
      const std::string text = SampleText(std::max(1, shape.sequence_length / 4));
      const std::vector<std::string> texts(std::max(shape.batch_size, 1), text);
      results.push_back(CheckModel(stub, spec, BuildTextInferRequest(spec.config, version, texts),
                                   SteadyCpuMs(spec, shape, workers), not_judged, threads));
      continue;
    }
    absl::StatusOr<std::vector<Tensor>> inputs = MakeWarmupInputs(spec.config, shape, 7);
    if (absl::IsFailedPrecondition(inputs.status())) {
      skipped.skipped = std::string(inputs.status().message());
      results.push_back(skipped);
      continue;
    }
    ASSIGN_OR_RETURN(const std::vector<Tensor> tensors, std::move(inputs));
    ASSIGN_OR_RETURN(const inference::ModelInferRequest request,
                     BuildInferRequest(spec.config.name(), version, Views(tensors)));
    results.push_back(
        CheckModel(stub, spec, request, SteadyCpuMs(spec, shape, workers), not_judged, threads));
  }
  return results;
}

}  // namespace kiln
