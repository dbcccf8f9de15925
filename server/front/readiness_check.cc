#include "server/front/readiness_check.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iterator>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "common/grpc_status.h"
#include "common/sample_text.h"
#include "common/shape.h"
#include "common/stats.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/warmup_inputs.h"
#include "server/codec/infer_codec.h"

namespace kiln {
namespace {

// Per request: generous, since a worker may still be settling its caches; a timeout is an error.
constexpr int kRequestTimeoutSeconds = 30;

bool Serves(const WorkerInfo& worker, const ModelSpec& spec) { return worker.spec.get() == &spec; }

// Whether `spec`'s version was warmed, so is checked and primed: not with --warmup=off (`warmup`
// false: that baseline must stay cold) nor with warmup.enabled false.
bool Warmed(const ModelSpec& spec, bool warmup) { return warmup && spec.config.warmup().enabled(); }

// Sends one check or priming request through `stub`, with kRequestTimeoutSeconds to answer.
grpc::Status Send(inference::GRPCInferenceService::Stub& stub,
                  const inference::ModelInferRequest& request,
                  inference::ModelInferResponse* response) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(kRequestTimeoutSeconds));
  return stub.ModelInfer(&context, request, response);
}

// How many of `workers` serve `spec`'s version.
int WorkerCount(const ModelSpec& spec, const std::vector<WorkerInfo>& workers) {
  return static_cast<int>(std::count_if(workers.begin(), workers.end(),
                                        [&spec](const WorkerInfo& w) { return Serves(w, spec); }));
}

// The median over the workers of `spec`'s version of their steady CPU time at `shape`.
double SteadyCpuMs(const ModelSpec& spec, const Shape& shape,
                   const std::vector<WorkerInfo>& workers) {
  std::vector<double> steady;
  for (const WorkerInfo& worker : workers) {
    if (!Serves(worker, spec)) continue;
    for (const internal::ShapeWarmup& warmed : worker.warmup.shapes()) {
      if (!warmed.refused() && warmed.batch_size() == shape.batch_size &&
          warmed.sequence_length() == shape.sequence_length) {
        steady.push_back(warmed.steady_cpu_ms());
      }
    }
  }
  return Median(steady);
}

// The shapes every worker of `spec`'s version warmed (its warmup plan's first shape when no
// worker reported any, as with a warmup that is off).
std::set<Shape> ShapesEveryWorkerWarmed(const ModelSpec& spec,
                                        const std::vector<WorkerInfo>& workers) {
  std::optional<std::set<Shape>> common;
  for (const WorkerInfo& worker : workers) {
    if (!Serves(worker, spec) || worker.warmup.shapes().empty()) continue;
    std::set<Shape> warmed;
    for (const internal::ShapeWarmup& shape : worker.warmup.shapes()) {
      if (!shape.refused()) warmed.insert({shape.batch_size(), shape.sequence_length()});
    }
    if (!common.has_value()) {
      common = std::move(warmed);
    } else {
      std::set<Shape> both;
      std::set_intersection(common->begin(), common->end(), warmed.begin(), warmed.end(),
                            std::inserter(both, both.begin()));
      common = std::move(both);
    }
  }
  if (!common.has_value() || common->empty()) return {WarmupShapes(spec.config).front()};
  return *common;
}

// The shapes of one version's check requests, in the order they are sent (the header says which):
// the larger shapes first, largest first, so that the smallest shape's calls run beside them on
// the other workers instead of after them; then the smallest shape once for each of the
// `workers` the larger ones leave (at least once): a worker that takes a larger shape has taken
// the whole path already, and a second call at the smallest would only queue behind it.
std::vector<Shape> CheckShapes(const ModelSpec& spec, const std::set<Shape>& warmed, int workers) {
  const int32_t explicit_requests = spec.config.readiness().check_requests();
  std::vector<Shape> shapes;
  if (explicit_requests == 0) shapes.assign(warmed.rbegin(), std::prev(warmed.rend()));
  shapes.insert(shapes.end(),
                explicit_requests > 0 ? explicit_requests
                                      : std::max(workers - static_cast<int>(shapes.size()), 1),
                *warmed.begin());
  return shapes;
}

// One check request at `shape` for `spec`, asking for its timing; FailedPrecondition when its
// inputs cannot be generated (a BYTES input without a tokenizer).
absl::StatusOr<inference::ModelInferRequest> CheckRequest(const ModelSpec& spec,
                                                          const Shape& shape) {
  const std::string version = std::to_string(spec.version);
  inference::ModelInferRequest request;
  if (spec.config.has_tokenizer()) {
    // Text through the tokenizer: sample text aimed at the shape's length (a word is often
    // several sub-word pieces, so a quarter of the length in words pads to it or to a shorter
    // length; the call is judged as the shape it ran as).
    const std::string text = SampleText(std::max(1, shape.sequence_length / 4));
    request = BuildTextInferRequest(spec.config, version,
                                    std::vector<std::string>(std::max(shape.batch_size, 1), text));
  } else {
    ASSIGN_OR_RETURN(const std::vector<Tensor> tensors,
                     MakeWarmupInputs(spec.config, shape, /*seed=*/7));
    ASSIGN_OR_RETURN(request, BuildInferRequest(spec.config.name(), version, Views(tensors)));
  }
  AskForTiming(&request);
  return request;
}

// What one check call gave back.
struct CallResult {
  Shape ran_as;
  double wall_ms = 0;
  double cpu_ms = 0;
  std::optional<int64_t> worker_pid;
};

// Judges `calls` by the shape each ran as (ShapeCheck); the result's worst shape is the one
// nearest its limit.
void Judge(const ModelSpec& spec, const std::vector<WorkerInfo>& workers,
           const std::vector<CallResult>& calls, ReadinessResult& result) {
  std::map<Shape, std::vector<double>> cpu_by_shape;
  std::vector<double> latencies;
  std::vector<double> cpu;
  std::set<int64_t> pids;
  for (const CallResult& call : calls) {
    cpu_by_shape[call.ran_as].push_back(call.cpu_ms);
    latencies.push_back(call.wall_ms);
    cpu.push_back(call.cpu_ms);
    if (call.worker_pid) pids.insert(*call.worker_pid);
  }
  result.workers_reached = static_cast<int>(pids.size());
  for (std::vector<double>* values : {&latencies, &cpu}) std::sort(values->begin(), values->end());
  result.p95_ms = latencies.empty() ? 0 : NearestRankPercentile(latencies, 95);
  result.cpu_p95_ms = cpu.empty() ? 0 : NearestRankPercentile(cpu, 95);
  double worst = -1;
  for (auto& [shape, values] : cpu_by_shape) {
    std::sort(values.begin(), values.end());
    ShapeCheck& check = result.shapes.emplace_back();
    check.ran_as = shape;
    check.calls = static_cast<int>(values.size());
    check.cpu_median_ms = NearestRankPercentile(values, 50);
    check.steady_cpu_ms = SteadyCpuMs(spec, shape, workers);
    check.reference_cpu_ms = ReferenceCpuMs(check.cpu_median_ms, check.steady_cpu_ms);
    check.limit_ms = result.factor * check.reference_cpu_ms + result.allowance_ms;
    const double nearness = check.limit_ms > 0 ? check.cpu_median_ms / check.limit_ms
                                               : std::numeric_limits<double>::infinity();
    if (nearness > worst) {
      worst = nearness;
      result.worst = shape;
      result.cpu_median_ms = check.cpu_median_ms;
      result.steady_cpu_ms = check.steady_cpu_ms;
      result.reference_cpu_ms = check.reference_cpu_ms;
      result.limit_ms = check.limit_ms;
    }
  }
}

// Checks one version, which has `worker_count` of `workers`: sends `requests` (in order,
// `concurrency` at a time) and judges them. `not_judged` says why its CPU time is not judged ("":
// it is); `threads`: its workers' intra-op threads.
ReadinessResult CheckModel(
    inference::GRPCInferenceService::Stub& stub, const ModelSpec& spec,
    const std::vector<WorkerInfo>& workers, int worker_count,
    const std::vector<std::pair<Shape, inference::ModelInferRequest>>& requests, int concurrency,
    const std::string& not_judged, int threads) {
  const ReadinessConfig& readiness = spec.config.readiness();
  ReadinessResult result;
  result.model = spec.key();
  result.not_judged = not_judged;
  result.requests = static_cast<int>(requests.size());
  result.factor = readiness.max_p95_factor();
  // A worker of several threads is measured by its whole process's CPU time, whose noise per call
  // (the pool's threads waking and going back to sleep) grows with the threads.
  result.allowance_ms = readiness.check_allowance_ms() * std::max(threads, 1);
  result.workers = worker_count;

  std::mutex mu;
  std::vector<CallResult> calls;
  size_t next = 0;
  auto sender = [&] {
    while (true) {
      size_t index;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (next >= requests.size()) return;
        index = next++;
      }
      const auto& [aimed, request] = requests[index];
      inference::ModelInferResponse response;
      const auto start = std::chrono::steady_clock::now();
      const grpc::Status status = Send(stub, request, &response);
      const double ms = MillisecondsSince(start);
      const ComputeTiming timing = ReadTiming(response);
      std::lock_guard<std::mutex> lock(mu);
      if (!status.ok()) {
        if (result.errors++ == 0) result.first_error = status.error_message();
      } else if (timing.cold_shape) {
        if (result.errors++ == 0) {
          result.first_error = absl::StrCat("a call ran as a shape its worker never warmed (",
                                            timing.ran_as.value_or(aimed).Describe(), ")");
        }
      } else {
        calls.push_back(CallResult{timing.ran_as.value_or(aimed), ms,
                                   timing.compute_cpu_ms.value_or(0), timing.worker_pid});
      }
    }
  };
  std::vector<std::thread> senders;
  for (int i = 0; i < std::max(1, concurrency); ++i) senders.emplace_back(sender);
  for (std::thread& thread : senders) thread.join();
  Judge(spec, workers, calls, result);
  return result;
}

// The intra-op threads of `spec`'s workers (the most any reported).
int WorkerThreads(const ModelSpec& spec, const std::vector<WorkerInfo>& workers) {
  int threads = 1;
  for (const WorkerInfo& worker : workers) {
    if (Serves(worker, spec)) threads = std::max(threads, worker.warmup.intra_op_threads());
  }
  return threads;
}

}  // namespace

InferenceServiceOptions CheckServiceOptions(bool staged, TextTokens* text_tokens) {
  InferenceServiceOptions options;
  options.staged = staged;
  options.text_tokens = text_tokens;
  options.unbatched = true;
  return options;
}

double ReferenceCpuMs(double median_cpu_ms, double steady_cpu_ms) {
  return std::clamp(median_cpu_ms, steady_cpu_ms, kMaxCheckSlowdown * steady_cpu_ms);
}

std::string ReadinessResult::Describe() const {
  if (!skipped.empty()) return absl::StrCat(model, ": not checked (", skipped, ")");
  const std::string judged =
      !not_judged.empty()
          ? absl::StrCat("not judged (", not_judged, ")")
          : absl::StrFormat(
                "%s limit %.2f ms at %s (%.1f x reference CPU %.2f ms + %.1f ms; steady %.2f ms)",
                cpu_median_ms <= limit_ms ? "<=" : ">", limit_ms, worst.Describe(), factor,
                reference_cpu_ms, allowance_ms, steady_cpu_ms);
  std::vector<std::string> shape_calls;
  for (const ShapeCheck& shape : shapes) {
    shape_calls.push_back(absl::StrCat(shape.ran_as.Describe(), " x", shape.calls));
  }
  std::string text = absl::StrFormat(
      "%s: %d requests%s through the whole path on %d of %d workers (%s), compute CPU median "
      "%.2f ms %s, CPU p95 %.2f ms; wall p95 %.2f ms: %s",
      model, requests, rounds > 1 ? absl::StrCat(" in ", rounds, " rounds") : "", workers_reached,
      workers, absl::StrJoin(shape_calls, ", "), cpu_median_ms, judged, cpu_p95_ms, p95_ms,
      passed() ? "passed" : "FAILED");
  if (errors > 0) absl::StrAppend(&text, "; ", errors, " errors, the first: ", first_error);
  return text;
}

absl::StatusOr<std::vector<ReadinessResult>> RunReadinessCheck(
    inference::GRPCInferenceService::Stub& stub, const std::vector<SharedSpec>& specs,
    const std::vector<WorkerInfo>& workers, bool warmup, bool threads_spin, int rounds) {
  std::vector<ReadinessResult> results(specs.size());
  std::vector<int> worker_counts(specs.size());
  // Each version's requests, built first (only that can fail); then all checked at once.
  std::vector<std::vector<std::pair<Shape, inference::ModelInferRequest>>> requests(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const ModelSpec& spec = *specs[i];
    results[i].model = spec.key();
    worker_counts[i] = WorkerCount(spec, workers);
    if (!Warmed(spec, warmup)) {
      results[i].skipped = "warmup is off";
      continue;
    }
    for (const Shape& shape :
         CheckShapes(spec, ShapesEveryWorkerWarmed(spec, workers), worker_counts[i])) {
      absl::StatusOr<inference::ModelInferRequest> request = CheckRequest(spec, shape);
      if (absl::IsFailedPrecondition(request.status())) {
        results[i].skipped = std::string(request.status().message());
        requests[i].clear();
        break;
      }
      RETURN_IF_ERROR(request.status());
      requests[i].emplace_back(shape, *std::move(request));
    }
    const size_t round = requests[i].size();
    requests[i].reserve(round * std::max(rounds, 1));  // so that pushing copies moves nothing
    for (int r = 1; r < rounds; ++r) {
      for (size_t j = 0; j < round; ++j) requests[i].push_back(requests[i][j]);
    }
  }
  std::vector<std::thread> checks;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!results[i].skipped.empty()) continue;
    checks.emplace_back([&, i] {
      const ModelSpec& spec = *specs[i];
      const int threads = WorkerThreads(spec, workers);
      // Why this model's CPU time cannot be judged, or "".
      const std::string not_judged =
          threads_spin && threads > 1
              ? absl::StrCat("its workers' ", threads,
                             " intra-op threads spin while they wait (OMP_WAIT_POLICY or "
                             "GOMP_SPINCOUNT), so their CPU time grows with the load around; "
                             "only errors are judged")
              : "";
      const int32_t concurrency = spec.config.readiness().check_concurrency();
      results[i] =
          CheckModel(stub, spec, workers, worker_counts[i], requests[i],
                     concurrency > 0 ? concurrency : worker_counts[i], not_judged, threads);
      results[i].rounds = std::max(rounds, 1);
    });
  }
  for (std::thread& check : checks) check.join();
  return results;
}

int ReadinessRounds(int attempt) { return 2 * attempt - 1; }

absl::StatusOr<int> PrimeServingPath(inference::GRPCInferenceService::Stub& stub,
                                     const std::vector<SharedSpec>& specs,
                                     const std::vector<WorkerInfo>& workers, bool warmup) {
  std::vector<inference::ModelInferRequest> requests;
  for (const SharedSpec& spec : specs) {
    if (!Warmed(*spec, warmup)) continue;
    absl::StatusOr<inference::ModelInferRequest> request =
        CheckRequest(*spec, *ShapesEveryWorkerWarmed(*spec, workers).begin());
    if (absl::IsFailedPrecondition(request.status())) continue;  // no synthetic inputs
    RETURN_IF_ERROR(request.status());
    requests.push_back(*std::move(request));
  }
  std::vector<grpc::Status> statuses(requests.size());
  std::vector<std::thread> senders;
  for (size_t i = 0; i < requests.size(); ++i) {
    senders.emplace_back([&, i] {
      inference::ModelInferResponse response;
      statuses[i] = Send(stub, requests[i], &response);
    });
  }
  for (std::thread& sender : senders) sender.join();
  for (size_t i = 0; i < requests.size(); ++i) {
    if (!statuses[i].ok()) {
      return Annotate(
          FromGrpcStatus(statuses[i]),
          absl::StrCat(requests[i].model_name(), " version ", requests[i].model_version()));
    }
  }
  return static_cast<int>(requests.size());
}

}  // namespace kiln
