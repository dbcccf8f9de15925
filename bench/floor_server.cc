// kiln-floor-server: a plain C++ gRPC server that answers the Open Inference Protocol for a
// model repository without running any model: the floor the front end allows, for
// scripts/bench.sh to set kiln-server's throughput and latency against (docs/measuring.md).
//
// It does for each ModelInfer what kiln-server's master does before and after a worker: routes
// the request to a model version, validates and decodes it against the version's config.pbtxt
// (and kiln.pbtxt) with kiln's codec (DecodeInferRequest), and encodes the config's outputs, zeros
// of the request's batch, with kiln's codec (EncodeInferResponse: the one copy of the output
// bytes kiln makes too). Same gRPC stack and threading model as kiln-server's front: the callback
// API on gRPC's own threads (bench/floor_service.h), the same message size limit and streams per
// connection. What it leaves out: the queue, the batcher, the hop to a worker and back, metrics.
//
// Links kiln's config loader and codec, never LibTorch.
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/args.h"
#include "bench/floor_models.h"
#include "bench/floor_service.h"

namespace kiln::bench {
namespace {

// kiln-server's defaults (--max_message_mb, --max_concurrent_streams), so that a client meets the
// same limits.
constexpr int kMaxMessageBytes = 64 << 20;
constexpr int kMaxConcurrentStreams = 100;

// Set by the SIGTERM/SIGINT handler, read by the main loop.
volatile std::sig_atomic_t stop_signal = 0;

void OnStopSignal(int sig) { stop_signal = sig; }

void InstallStopHandlers() {
  struct sigaction action = {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
}

int Fail(const std::string& message) {
  std::cerr << "kiln-floor-server: " << message << "\n";
  return kExitFailure;
}

int Usage(const std::string& problem) {
  std::cerr << "kiln-floor-server: " << problem
            << "\nrun 'kiln-floor-server --help' for its flags\n";
  return kExitUsage;
}

int Run(const std::vector<std::string>& args) {
  std::string repository = "models", model_list, host = "127.0.0.1";
  int64_t port = 0;
  FlagSet flags(
      "kiln-floor-server --model_repository=DIR [--model=A,B] [--port=N]",
      "A plain gRPC server that answers the Open Inference Protocol (ServerLive, ServerReady,\n"
      "ModelReady, ServerMetadata, ModelMetadata, ModelInfer; grpc.health.v1 SERVING for the\n"
      "server and each model) for the models of a kiln model repository without running them:\n"
      "each request is routed and decoded against its config.pbtxt with kiln's codec, and\n"
      "answered with the config's outputs as zeros of the request's batch, encoded with kiln's\n"
      "codec. The floor kiln-server's front allows on the same gRPC stack (callback API, 64 MiB\n"
      "messages, 100 streams per connection): scripts/bench.sh runs the same load against it.\n"
      "Loads no model file (no LibTorch); reads only the configs, with kiln's loader, so a\n"
      "config kiln-server refuses is refused here too.\n"
      "\n"
      "Prints 'kiln-floor-server: listening on HOST:PORT' once it serves; SIGTERM or SIGINT stop\n"
      "it (calls in flight get up to 2 s). Exit status: 0 stopped by a signal, 1 it could not\n"
      "serve (no repository, a bad config, the port taken), 2 bad flags.",
      {"kiln-floor-server --model_repository=models --model=mlp --port=0",
       "kiln-bench load --addr=127.0.0.1:PORT --model=mlp --mode=closed --concurrency=32"});
  flags.AddString("model_repository", &repository, "the model repository (Triton's layout)");
  flags.AddString("model", &model_list,
                  "the models to answer for, comma-separated (empty: every model of the "
                  "repository)");
  flags.AddString("host", &host, "the address to listen on");
  flags.AddInt("port", &port, "the port to listen on; 0 picks a free one (printed)");
  if (const absl::Status parsed = flags.Parse(args); !parsed.ok()) {
    return Usage(std::string(parsed.message()));
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return kExitOk;
  }
  if (port < 0 || port > 65535) return Usage("--port must be in [0, 65535]");
  if (repository.empty()) return Usage("--model_repository must not be empty");
  std::vector<std::string> names;
  for (absl::string_view name : absl::StrSplit(model_list, ',', absl::SkipWhitespace())) {
    names.emplace_back(name);
  }

  absl::StatusOr<std::unique_ptr<FloorModels>> models = FloorModels::Load(repository, names);
  if (!models.ok()) return Fail(std::string(models.status().message()));
  FloorService service(**models);

  InstallStopHandlers();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);  // never share the port silently
  int bound_port = 0;
  const std::string address = absl::StrCat(host, ":", port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  const std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    return Fail(absl::StrCat("cannot listen on ", address,
                             " (in use by another process, or not a local address)"));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(true);
  for (const std::string& name : (*models)->Names()) health->SetServingStatus(name, true);
  std::cout << "kiln-floor-server: listening on " << host << ":" << bound_port << " ("
            << absl::StrJoin((*models)->Names(), ", ") << "; outputs are zeros, no model runs)"
            << std::endl;

  while (stop_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  std::cout << "kiln-floor-server: stopped (" << strsignal(stop_signal) << ")" << std::endl;
  return kExitOk;
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  return kiln::bench::Run(std::vector<std::string>(argv + 1, argv + argc));
}
