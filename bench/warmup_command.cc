#include "bench/warmup_command.h"

#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/args.h"
#include "bench/oip_client.h"
#include "proto/kiln_service.grpc.pb.h"

namespace kiln::bench {
namespace {

const char* kWarmupDescription =
    "Asks the server's kiln.KilnService/WarmupReport what its startup did and what serving has\n"
    "met since, and prints:\n"
    "  - the startup timeline: each phase, its duration and when it ended (ms since the master\n"
    "    started), and the memory limit the server planned with;\n"
    "  - per model (--model: that one only): each worker's memory budget, the recorded traffic\n"
    "    shapes replayed on top of the config's warmup plan (batch x seq), and the serving\n"
    "    counters (requests, cold_shape_hits: ran an unwarmed shape, padded_to_bucket: text\n"
    "    padded up to a warmed length, padded_batch: zero rows added up to a warmed batch size,\n"
    "    split: run in several passes to fit the budget, over_budget: refused);\n"
    "  - per ready worker: pid, device, warmup time, peak and baseline anonymous memory, the "
    "tokenizer's\n"
    "    first and steady time (text models), and one row per warmed shape: batch, seq (- for a\n"
    "    model without a variable dim), the first call's ms, the steady median ms, first/steady,\n"
    "    calls, calls until it settled (never = not within the cap), the peak anonymous memory, "
    "and its\n"
    "    inputs (recorded: a real request kept with --record_samples; synthetic: generated\n"
    "    data or sample text); a shape whose projected peak was over the budget was never run:\n"
    "    REFUSED (projected N MB).\n"
    "MB are 10^6 bytes, as in the server's log. --json prints the response as JSON instead\n"
    "(proto field names, every field; int64 values are strings, as the proto3 JSON mapping has\n"
    "it), for scripts.\n"
    "Exit status: 0 printed, 1 the RPC failed (e.g. UNAVAILABLE, or UNIMPLEMENTED from a server\n"
    "without the warmup report), 2 bad flags.";

// MB as the server logs them (and as its memory_limit reads): 10^6 bytes.
constexpr double kBytesPerMb = 1e6;

std::string Mb(int64_t bytes) { return absl::StrFormat("%.1f MB", bytes / kBytesPerMb); }

// "1x16" (batch x sequence length), "4" for a model without a variable dim.
std::string ShapeText(int32_t batch_size, int32_t sequence_length) {
  if (sequence_length == 0) return absl::StrCat(batch_size);
  return absl::StrCat(batch_size, "x", sequence_length);
}

void AppendTimeline(const WarmupReportResponse& response, std::string* out) {
  if (response.timeline().empty()) {
    absl::StrAppend(out, "startup timeline: none reported\n");
    return;
  }
  // The phase last: its name is the master's log line, of any length.
  absl::StrAppend(out, "startup timeline:\n");
  absl::StrAppendFormat(out, "  %10s  %14s  %s\n", "ms", "since start ms", "phase");
  for (const StartupPhase& phase : response.timeline()) {
    absl::StrAppendFormat(out, "  %10.1f  %14.1f  %s\n", phase.duration_ms(),
                          phase.since_start_ms(), phase.name());
  }
}

void AppendShapeTable(const internal::WarmupReport& worker, std::string* out) {
  if (worker.shapes().empty()) {
    absl::StrAppend(out, "    no warmed shapes\n");
    return;
  }
  absl::StrAppendFormat(out, "    %5s  %5s  %9s  %13s  %12s  %5s  %13s  %11s  %s\n", "batch", "seq",
                        "first ms", "steady p50 ms", "first/steady", "calls", "settled after",
                        "peak anon MB", "inputs");
  for (const internal::ShapeWarmup& shape : worker.shapes()) {
    const std::string seq =
        shape.sequence_length() == 0 ? "-" : absl::StrCat(shape.sequence_length());
    if (shape.refused()) {
      absl::StrAppendFormat(out, "    %5d  %5s  REFUSED (projected %s)\n", shape.batch_size(), seq,
                            Mb(shape.projected_peak_bytes()));
      continue;
    }
    const std::string ratio = shape.steady_ms() > 0
                                  ? absl::StrFormat("%.1f", shape.first_ms() / shape.steady_ms())
                                  : std::string("-");
    const std::string settled =
        shape.settled_after() == 0 ? "never" : absl::StrCat(shape.settled_after());
    const std::string rss = shape.peak_anon_bytes() > 0
                                ? absl::StrFormat("%.1f", shape.peak_anon_bytes() / kBytesPerMb)
                                : std::string("-");
    absl::StrAppendFormat(out, "    %5d  %5s  %9.3f  %13.3f  %12s  %5d  %13s  %11s  %s\n",
                          shape.batch_size(), seq, shape.first_ms(), shape.steady_ms(), ratio,
                          shape.calls(), settled, rss,
                          shape.recorded_request() ? "recorded" : "synthetic");
  }
}

void AppendWorker(const internal::WarmupReport& worker, std::string* out) {
  absl::StrAppendFormat(
      out, "  worker %d: pid %d, %s, %d intra-op thread(s)%s\n", worker.worker_id(), worker.pid(),
      worker.device().empty() ? "device unknown" : worker.device(), worker.intra_op_threads(),
      worker.threads_note().empty() ? "" : absl::StrCat(" (", worker.threads_note(), ")"));
  absl::StrAppendFormat(out, "    warmup %.1f ms, peak anon %s, baseline anon %s, budget %s\n",
                        worker.warmup_ms(), Mb(worker.peak_anon_bytes()),
                        Mb(worker.baseline_anon_bytes()),
                        worker.budget_bytes() > 0 ? Mb(worker.budget_bytes()) : "none");
  if (worker.tokenizer_texts() > 0) {
    absl::StrAppendFormat(out, "    tokenizer: %d texts, first %.2f ms, steady %.2f ms\n",
                          worker.tokenizer_texts(), worker.tokenizer_first_ms(),
                          worker.tokenizer_steady_ms());
  }
  if (worker.idle_starved()) {
    absl::StrAppendFormat(out,
                          "    priority: idle for %.1f ms, then normal (starved: %.1f%% of the "
                          "CPU time it waited for)\n",
                          worker.idle_ms(), 100 * worker.idle_starved_cpu_share());
  } else if (worker.idle_priority()) {
    absl::StrAppendFormat(out, "    priority: idle while warming (%.1f ms), then normal\n",
                          worker.idle_ms());
  } else {
    absl::StrAppend(
        out, "    priority: normal",
        worker.priority_note().empty() ? "" : absl::StrCat(" (", worker.priority_note(), ")"),
        "\n");
  }
  if (worker.template_pid() > 0) {
    absl::StrAppendFormat(out,
                          "    forked from the warm template pid %d (warmed in %.1f ms, %s "
                          "private); private peak %s\n",
                          worker.template_pid(), worker.template_warmup_ms(),
                          Mb(worker.template_private_bytes()), Mb(worker.private_peak_bytes()));
  }
  AppendShapeTable(worker, out);
}

void AppendModel(const ModelWarmupReport& model, std::string* out) {
  absl::StrAppend(out, "\nmodel ", model.model(), "\n");
  // Servers before min_ready report no target; say nothing rather than "0/0".
  if (model.target_workers() > 0) {
    absl::StrAppend(out, "  workers:         ", model.warm_workers(), "/", model.target_workers(),
                    " warm, SERVING needs ", model.min_ready(), ": ",
                    !model.serving()   ? "NOT_SERVING"
                    : model.degraded() ? "SERVING, degraded (a worker is being replaced)"
                                       : "SERVING",
                    "\n");
  }
  absl::StrAppend(out, "  worker budget:   ",
                  model.worker_budget_bytes() > 0 ? Mb(model.worker_budget_bytes()) : "none", "\n");
  std::vector<std::string> replayed;
  for (const internal::Shape& shape : model.replayed()) {
    replayed.push_back(ShapeText(shape.batch_size(), shape.sequence_length()));
  }
  absl::StrAppend(out,
                  "  replayed shapes: ", replayed.empty() ? "none" : absl::StrJoin(replayed, ", "),
                  replayed.empty() ? "" : " (batch x seq)", "\n");
  const ServingCounters& c = model.counters();
  absl::StrAppend(out, "  counters:        requests ", c.requests(), ", cold_shape_hits ",
                  c.cold_shape_hits(), ", padded_to_bucket ", c.padded_to_bucket(),
                  ", padded_batch ", c.padded_batch(), ", split ", c.split(), ", over_budget ",
                  c.over_budget(), "\n");
  if (model.workers().empty()) {
    absl::StrAppend(out, "  no ready workers\n");
    return;
  }
  for (const internal::WarmupReport& worker : model.workers()) AppendWorker(worker, out);
}

}  // namespace

std::string FormatWarmupReport(const WarmupReportResponse& response) {
  std::string out;
  AppendTimeline(response, &out);
  absl::StrAppend(&out, "memory limit: ",
                  response.memory_limit().empty() ? "unknown" : response.memory_limit(), "\n");
  // Servers before the CPU sizing report none of these; say nothing rather than "unknown".
  if (!response.cpu_limit().empty()) {
    absl::StrAppend(&out, "cpu limit:    ", response.cpu_limit(), "\n");
    absl::StrAppend(&out, "threads:      ", response.thread_plan(), "\n");
    for (const std::string& warning : response.thread_plan_warnings()) {
      absl::StrAppend(&out, "  warning: ", warning, "\n");
    }
    absl::StrAppend(&out, "openmp wait:  ", response.openmp_wait(), "\n");
    absl::StrAppend(&out, "warming at:   ", response.warm_priority(), "\n");
  }
  if (response.models().empty()) absl::StrAppend(&out, "\nno models\n");
  for (const ModelWarmupReport& model : response.models()) AppendModel(model, &out);
  return out;
}

absl::StatusOr<std::string> WarmupReportJson(const WarmupReportResponse& response) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(response, &json, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot print the report as JSON: ", status.ToString()));
  }
  if (json.empty() || json.back() != '\n') json += '\n';
  return json;
}

std::string WarmupRpcError(const grpc::Status& status, const std::string& model) {
  std::string line = absl::StrCat("kiln-bench: WarmupReport failed: ", FormatGrpcStatus(status));
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    absl::StrAppend(&line, " (the server has no kiln.KilnService: an older kiln-server?)");
  } else if (status.error_code() == grpc::StatusCode::NOT_FOUND && !model.empty()) {
    absl::StrAppend(&line, " (leave out --model for every model)");
  }
  return line;
}

int RunWarmupCommand(const std::vector<std::string>& args) {
  std::string addr = "127.0.0.1:8001";
  std::string model;
  bool json = false;
  int64_t timeout_ms = 10000;
  FlagSet flags("kiln-bench warmup [--addr=HOST:PORT] [--model=NAME] [--json] [flags]",
                kWarmupDescription,
                {"kiln-bench warmup --addr=127.0.0.1:8001", "kiln-bench warmup --model=textcls",
                 "kiln-bench warmup --json > /tmp/warmup.json"});
  flags.AddString("addr", &addr, "server address, host:port");
  flags.AddString("model", &model, "report this model only; empty = every model");
  flags.AddBool("json", &json, "print the response as JSON instead of tables");
  flags.AddInt("timeout_ms", &timeout_ms, "deadline of the RPC, in milliseconds");
  if (std::optional<int> exit = ParseFlagsOrExit(&flags, "warmup", args, std::cout, std::cerr)) {
    return *exit;
  }
  if (timeout_ms < 1) {
    std::cerr << "kiln-bench warmup: --timeout_ms must be >= 1\n"
              << "run 'kiln-bench warmup --help' for its flags\n";
    return kExitUsage;
  }

  const absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ConnectChannel(addr);
  if (!channel.ok()) {
    std::cerr << "kiln-bench: " << channel.status().message() << "\n";
    return kExitFailure;
  }
  const std::unique_ptr<KilnService::Stub> stub = KilnService::NewStub(*channel);
  WarmupReportRequest request;
  request.set_model(model);
  WarmupReportResponse response;
  grpc::ClientContext context;
  SetTimeout(&context, timeout_ms);
  const grpc::Status status = stub->WarmupReport(&context, request, &response);
  if (!status.ok()) {
    std::cerr << WarmupRpcError(status, model) << "\n";
    return kExitFailure;
  }
  if (json) {
    absl::StatusOr<std::string> text = WarmupReportJson(response);
    if (!text.ok()) {
      std::cerr << "kiln-bench: " << text.status().message() << "\n";
      return kExitFailure;
    }
    std::cout << *text;
  } else {
    std::cout << FormatWarmupReport(response);
  }
  return kExitOk;
}

}  // namespace kiln::bench
