#include "bench/load_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/args.h"
#include "bench/load_generator.h"
#include "bench/oip_client.h"
#include "proto/grpc_service.grpc.pb.h"

namespace kiln::bench {
namespace {

const char* kLoadDescription =
    "Drives one model with ModelInfer requests and reports the achieved rate, throughput, latency\n"
    "percentiles (OK requests only) and errors by gRPC code. Every request carries the same\n"
    "seeded random inputs (as 'infer --random': ModelMetadata gives the inputs, --batch the\n"
    "leading -1 dim, --seq every other -1 dim). A text model (a BYTES input in the metadata)\n"
    "gets text in that input alone, as with 'infer': --text, else a fixed English sample of\n"
    "--seq words, in each of the --batch rows; the server tokenizes every request.\n"
    "\n"
    "--mode=open: requests are scheduled at --rate per second, evenly spaced (--arrival=constant)\n"
    "  or with seeded exponential gaps (--arrival=poisson), and each is sent at its time whether\n"
    "  or not earlier ones returned; its latency counts from the scheduled time, so a slow server\n"
    "  (or a client that falls behind) shows as latency, not as a lower rate (no coordinated\n"
    "  omission). At most --concurrency requests are outstanding; a request due while the cap is\n"
    "  full is not sent and counts as error DROPPED_CLIENT_CAP.\n"
    "--mode=closed: --concurrency requests in flight, each slot sending its next request as soon\n"
    "  as the previous one returns; latency counts from the send.\n"
    "\n"
    "The run lasts --duration_s or --requests (total scheduled, one of the two), then waits for\n"
    "outstanding requests up to their deadline (--timeout_ms); one still without a response then\n"
    "counts as NO_RESPONSE. --warmup_requests are sent first, one at a time, and not counted.\n"
    "A progress line goes to stderr every 2 s on runs longer than 3 s. --csv writes one row per\n"
    "request (scheduled_ms,sent_ms,latency_ms,code; ms since the start), --json the summary.\n"
    "Exit status: 0 the run completed (request errors are reported, not fatal), 1 it could not\n"
    "run (ModelMetadata failed, unusable model, output file not writable), 2 bad flags.";

int Usage(const std::string& problem) {
  std::cerr << "kiln-bench load: " << problem << "\nrun 'kiln-bench load --help' for its flags\n";
  return kExitUsage;
}

// Opens `path` for writing (when set) before the run, so that a bad path fails in a second,
// not after the whole run.
bool OpenOutput(const std::string& path, const char* flag, std::ofstream* out) {
  if (path.empty()) return true;
  out->open(path, std::ios::out | std::ios::trunc);
  if (!*out) {
    std::cerr << "kiln-bench load: cannot write " << flag << " file " << path << "\n";
    return false;
  }
  return true;
}

}  // namespace

int RunLoadCommand(const std::vector<std::string>& args) {
  std::string addr = "127.0.0.1:8001";
  std::string model;
  std::string version;
  std::string mode_text;
  std::string rate_text;
  std::string arrival_text = "poisson";
  std::string concurrency_text = "auto";
  std::string duration_text = "10";
  int64_t requests = 0;
  int64_t batch = 1;
  int64_t seq = 16;
  int64_t seed = 0;
  int64_t timeout_ms = 10000;
  int64_t warmup_requests = 0;
  std::string csv_path;
  std::string json_path;
  std::string text;

  FlagSet flags(
      "kiln-bench load --model=NAME --mode=open|closed [--rate=R] [flags]", kLoadDescription,
      {"kiln-bench load --model=mlp --mode=open --rate=200 --duration_s=30 --json=/tmp/open.json",
       "kiln-bench load --model=mlp --mode=open --rate=500 --arrival=constant --requests=10000"
       " --csv=/tmp/requests.csv",
       "kiln-bench load --model=resnet18 --mode=closed --concurrency=4 --duration_s=20"
       " --warmup_requests=20 --batch=2",
       "kiln-bench load --model=textcls --mode=closed --concurrency=2 --requests=200"
       " --text=\"is this review positive\""});
  flags.AddString("addr", &addr, "server address, host:port");
  flags.AddString("model", &model, "model name (required)");
  flags.AddString("version", &version, "model version; empty = the server's choice");
  flags.AddString("mode", &mode_text,
                  "open (scheduled arrivals) or closed (fixed in-flight); required");
  flags.AddString("rate", &rate_text, "open loop: requests per second, > 0 (required with open)");
  flags.AddString("arrival", &arrival_text, "open loop: poisson or constant inter-arrival gaps");
  flags.AddString("concurrency", &concurrency_text,
                  "closed: requests in flight; open: cap on outstanding requests; "
                  "auto = 1 closed, 1000 open");
  flags.AddString("duration_s", &duration_text,
                  "how long to schedule requests, seconds (> 0; excludes --requests)");
  flags.AddInt("requests", &requests, "how many requests to schedule (excludes --duration_s)");
  flags.AddInt("batch", &batch, "batch size (the leading -1 dim); text models: rows of text");
  flags.AddInt("seq", &seq, "every other -1 dim; text models: words of sample text");
  flags.AddString("text", &text,
                  "text models: the text of every row (default: sample text of --seq words)");
  flags.AddInt("seed", &seed, "seed of the random inputs and of the Poisson schedule");
  flags.AddInt("timeout_ms", &timeout_ms, "deadline of each RPC, in milliseconds");
  flags.AddInt("warmup_requests", &warmup_requests, "sent first, one at a time, not counted");
  flags.AddString("csv", &csv_path, "write one row per request to this file");
  flags.AddString("json", &json_path, "write the summary as JSON to this file");
  if (std::optional<int> exit = ParseFlagsOrExit(&flags, "load", args, std::cout, std::cerr)) {
    return *exit;
  }

  LoadOptions options;
  if (model.empty()) return Usage("--model is required");
  if (mode_text == "open") {
    options.mode = LoopMode::kOpen;
  } else if (mode_text == "closed") {
    options.mode = LoopMode::kClosed;
  } else if (mode_text.empty()) {
    return Usage("--mode is required: open or closed");
  } else {
    return Usage(absl::StrCat("--mode must be open or closed, not '", mode_text, "'"));
  }
  const bool open = options.mode == LoopMode::kOpen;
  if (open) {
    if (!flags.WasSet("rate")) {
      return Usage("--rate is required with --mode=open (requests per second, > 0)");
    }
    const std::optional<double> rate = ParsePositive(rate_text);
    if (!rate) return Usage(absl::StrCat("--rate must be a number > 0, not '", rate_text, "'"));
    options.rate = *rate;
    const std::optional<Arrival> arrival = ParseArrival(arrival_text);
    if (!arrival) {
      return Usage(absl::StrCat("--arrival must be poisson or constant, not '", arrival_text, "'"));
    }
    options.arrival = *arrival;
  } else {
    if (flags.WasSet("rate")) {
      return Usage(
          "--rate applies to --mode=open only (a closed loop's rate follows from "
          "--concurrency and the latency)");
    }
    if (flags.WasSet("arrival")) return Usage("--arrival applies to --mode=open only");
  }
  if (concurrency_text == "auto") {
    options.concurrency = open ? 1000 : 1;
  } else {
    const std::optional<int64_t> concurrency = ParseInt64(concurrency_text);
    if (!concurrency || *concurrency < 1) {
      return Usage(absl::StrCat("--concurrency must be an integer >= 1 (or auto), not '",
                                concurrency_text, "'"));
    }
    options.concurrency = *concurrency;
  }
  if (flags.WasSet("requests") && flags.WasSet("duration_s")) {
    return Usage("--duration_s and --requests exclude each other: give one");
  }
  if (flags.WasSet("requests")) {
    if (requests < 1) return Usage("--requests must be >= 1");
    options.requests = requests;
  } else {
    const std::optional<double> duration = ParsePositive(duration_text);
    if (!duration) {
      return Usage(
          absl::StrCat("--duration_s must be a number of seconds > 0, not '", duration_text, "'"));
    }
    options.duration_s = *duration;
  }
  if (batch < 1 || seq < 1) return Usage("--batch and --seq must be >= 1");
  if (seed < 0) return Usage("--seed must be >= 0");
  if (timeout_ms < 1) return Usage("--timeout_ms must be >= 1");
  if (warmup_requests < 0) return Usage("--warmup_requests must be >= 0");
  options.seed = static_cast<uint64_t>(seed);
  options.timeout_ms = timeout_ms;
  options.warmup_requests = warmup_requests;
  if (const absl::Status valid = ValidateLoadOptions(options); !valid.ok()) {
    return Usage(std::string(valid.message()));
  }

  std::ofstream csv_file;
  std::ofstream json_file;
  if (!OpenOutput(csv_path, "--csv", &csv_file) || !OpenOutput(json_path, "--json", &json_file)) {
    return kExitFailure;
  }

  const absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ConnectChannel(addr);
  if (!channel.ok()) {
    std::cerr << "kiln-bench: " << channel.status().message() << "\n";
    return kExitFailure;
  }
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(*channel);
  // Not --timeout_ms, which may be set tiny on purpose to provoke DEADLINE_EXCEEDED.
  absl::StatusOr<inference::ModelMetadataResponse> metadata =
      FetchModelMetadata(*stub, model, version, std::max<int64_t>(timeout_ms, 10000));
  if (!metadata.ok()) {
    std::cerr << "kiln-bench: " << metadata.status().message() << "\n";
    return kExitFailure;
  }
  SyntheticRequestOptions input_options;
  input_options.batch = batch;
  input_options.seq = seq;
  input_options.seed = static_cast<uint64_t>(seed);
  if (flags.WasSet("text")) input_options.text = text;
  absl::StatusOr<SyntheticRequest> synthetic =
      BuildSyntheticRequest(*metadata, model, version, input_options);
  if (!synthetic.ok()) {
    std::cerr << "kiln-bench: " << synthetic.status().message() << "\n";
    return kExitFailure;
  }
  const inference::ModelInferRequest& request = synthetic->request;

  std::cerr << "kiln-bench load: " << model << " at " << addr << ", inputs "
            << absl::StrJoin(synthetic->inputs, "; ") << " (" << synthetic->origin << "), "
            << (open ? absl::StrCat("open loop at ", rate_text, " rps (", arrival_text, ")")
                     : absl::StrCat("closed loop, concurrency ", options.concurrency))
            << ", "
            << (options.requests > 0 ? absl::StrCat(options.requests, " requests")
                                     : absl::StrCat(options.duration_s, " s"))
            << std::endl;
  options.progress = [](const Progress& progress) {
    std::cerr << FormatProgress(progress, 2) << std::endl;
  };

  LoadResult result;
  {
    GrpcSender sender(stub.get(), &request, timeout_ms);
    result = RunLoad(options, [&sender](DoneFn done) { sender.Send(std::move(done)); });
  }  // ~GrpcSender: every call completed (late ones after the drain are ignored)
  if (result.warmup_failures > 0) {
    std::cerr << "kiln-bench load: " << result.warmup_failures << " of " << warmup_requests
              << " warmup requests failed (first: " << result.first_warmup_error << ")\n";
  }

  RunInfo info;
  info.model = model;
  info.mode = options.mode;
  info.arrival = options.arrival;
  info.target_rate = open ? options.rate : 0;
  info.concurrency = options.concurrency;
  const RunStats stats(info, std::move(result.records), result.schedule_span_ms);
  std::cout << stats.Report() << std::flush;

  if (!csv_path.empty()) {
    stats.WriteCsv(csv_file);
    csv_file.close();
    if (!csv_file) {
      std::cerr << "kiln-bench load: writing " << csv_path << " failed\n";
      return kExitFailure;
    }
    std::cout << "wrote " << stats.scheduled() << " request rows to " << csv_path << "\n";
  }
  if (!json_path.empty()) {
    json_file << stats.ToJson().dump(1) << "\n";
    json_file.close();
    if (!json_file) {
      std::cerr << "kiln-bench load: writing " << json_path << " failed\n";
      return kExitFailure;
    }
    std::cout << "wrote the summary to " << json_path << "\n";
  }
  return kExitOk;
}

}  // namespace kiln::bench
