#include "bench/scale_command.h"

#include <iostream>
#include <memory>
#include <optional>

#include "bench/args.h"
#include "bench/oip_client.h"
#include "proto/kiln_service.grpc.pb.h"

namespace kiln::bench {
namespace {

const char* kScaleDescription =
    "Sets --model's worker count on a running kiln-server (KilnService/SetWorkerCount), as\n"
    "SIGTTIN/SIGTTOU do for every model: new workers are forked from the zygote and take calls\n"
    "only once warm; removed ones finish their call first. Prints the count now wanted and how\n"
    "many workers are warm (new ones are still warming; watch them with 'kiln-bench warmup').\n"
    "Exit status: 0 done, 1 refused (e.g. RESOURCE_EXHAUSTED: the new workers do not fit in\n"
    "memory; the message has the numbers) or an RPC error, 2 bad flags.";

}  // namespace

int RunScaleCommand(const std::vector<std::string>& args) {
  std::string addr = "127.0.0.1:8001";
  std::string model;
  int64_t workers = 0;
  int64_t timeout_ms = 10000;
  FlagSet flags("kiln-bench scale --model=NAME --workers=N [--addr=HOST:PORT]", kScaleDescription,
                {"kiln-bench scale --model=resnet50 --workers=4",
                 "kiln-bench scale --addr=127.0.0.1:8001 --model=mlp --workers=1"});
  flags.AddString("addr", &addr, "server address, host:port");
  flags.AddString("model", &model, "the model to scale (required)");
  flags.AddInt("workers", &workers, "the worker count to set, 1..256 (required)");
  flags.AddInt("timeout_ms", &timeout_ms, "deadline of the RPC, in milliseconds");
  if (std::optional<int> exit = ParseFlagsOrExit(&flags, "scale", args, std::cout, std::cerr)) {
    return *exit;
  }
  const char* problem = model.empty()                  ? "--model is required"
                        : workers < 1 || workers > 256 ? "--workers must be in [1, 256]"
                        : timeout_ms < 1               ? "--timeout_ms must be >= 1"
                                                       : nullptr;
  if (problem != nullptr) {
    std::cerr << "kiln-bench scale: " << problem << "\n"
              << "run 'kiln-bench scale --help' for its flags\n";
    return kExitUsage;
  }

  const absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ConnectChannel(addr);
  if (!channel.ok()) {
    std::cerr << "kiln-bench: " << channel.status().message() << "\n";
    return kExitFailure;
  }
  const std::unique_ptr<KilnService::Stub> stub = KilnService::NewStub(*channel);
  SetWorkerCountRequest request;
  request.set_model(model);
  request.set_workers(static_cast<int32_t>(workers));
  SetWorkerCountResponse response;
  grpc::ClientContext context;
  SetTimeout(&context, timeout_ms);
  const grpc::Status status = stub->SetWorkerCount(&context, request, &response);
  if (!status.ok()) {
    std::cerr << "kiln-bench: SetWorkerCount failed: " << FormatGrpcStatus(status) << "\n";
    return kExitFailure;
  }
  std::cout << response.model() << ": " << response.workers() << " worker(s) wanted, "
            << response.warm_workers() << " warm now\n";
  return kExitOk;
}

}  // namespace kiln::bench
