#include "bench/health_command.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "bench/args.h"
#include "bench/oip_client.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"

namespace kiln::bench {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

const char* kHealthDescription =
    "Asks the server's grpc.health.v1.Health service about --service (\"\" = the whole server;\n"
    "kiln also answers per model name) and prints SERVING, NOT_SERVING, UNKNOWN or\n"
    "SERVICE_UNKNOWN. With --watch, streams Watch and prints every status change (with the\n"
    "seconds since start) until --timeout_ms has passed.\n"
    "Exit status: 0 SERVING (with --watch: the last status seen), 1 anything else (another\n"
    "status, an RPC error such as UNAVAILABLE), 2 bad flags.";

// Watch until the deadline; prints each status. Returns the exit status.
int Watch(Health::Stub* stub, const HealthCheckRequest& request, int64_t timeout_ms) {
  grpc::ClientContext context;
  SetTimeout(&context, timeout_ms);
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<grpc::ClientReaderInterface<HealthCheckResponse>> reader =
      stub->Watch(&context, request);
  HealthCheckResponse response;
  std::optional<int> last;
  while (reader->Read(&response)) {
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    char when[32];
    std::snprintf(when, sizeof(when), "+%.3fs", elapsed.count());
    std::cout << when << " " << ServingStatusName(response.status()) << std::endl;
    last = response.status();
  }
  const grpc::Status status = reader->Finish();
  if (status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
    // The stream ended before the timeout: the server went away or refused the call.
    std::cerr << "kiln-bench: Health.Watch failed: " << FormatGrpcStatus(status) << "\n";
    return kExitFailure;
  }
  if (!last) {
    std::cerr << "kiln-bench: Health.Watch: no status within " << timeout_ms << " ms\n";
    return kExitFailure;
  }
  return *last == HealthCheckResponse::SERVING ? kExitOk : kExitFailure;
}

}  // namespace

std::string ServingStatusName(int status) {
  switch (status) {
    case HealthCheckResponse::UNKNOWN:
      return "UNKNOWN";
    case HealthCheckResponse::SERVING:
      return "SERVING";
    case HealthCheckResponse::NOT_SERVING:
      return "NOT_SERVING";
    case HealthCheckResponse::SERVICE_UNKNOWN:
      return "SERVICE_UNKNOWN";
    default:
      return absl::StrCat("STATUS_", status);
  }
}

HealthOutcome InterpretCheck(const grpc::Status& status, const HealthCheckResponse& response) {
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    return {ServingStatusName(HealthCheckResponse::SERVICE_UNKNOWN), false, kExitFailure};
  }
  if (!status.ok()) {
    return {absl::StrCat("kiln-bench: Health.Check failed: ", FormatGrpcStatus(status)), true,
            kExitFailure};
  }
  return {ServingStatusName(response.status()), false,
          response.status() == HealthCheckResponse::SERVING ? kExitOk : kExitFailure};
}

int RunHealthCommand(const std::vector<std::string>& args) {
  std::string addr = "127.0.0.1:8001";
  std::string service;
  bool watch = false;
  int64_t timeout_ms = 1000;
  FlagSet flags("kiln-bench health [--addr=HOST:PORT] [--service=NAME] [--watch] [flags]",
                kHealthDescription,
                {"kiln-bench health --addr=127.0.0.1:8001",
                 "kiln-bench health --service=resnet50 --watch --timeout_ms=60000"});
  flags.AddString("addr", &addr, "server address, host:port");
  flags.AddString("service", &service, "health service name: \"\" = server, or a model name");
  flags.AddBool("watch", &watch, "stream Watch and print each status change until the timeout");
  flags.AddInt("timeout_ms", &timeout_ms, "deadline of Check; with --watch, how long to watch");
  if (std::optional<int> exit = ParseFlagsOrExit(&flags, "health", args, std::cout, std::cerr)) {
    return *exit;
  }
  if (timeout_ms < 1) {
    std::cerr << "kiln-bench health: --timeout_ms must be >= 1\n"
              << "run 'kiln-bench health --help' for its flags\n";
    return kExitUsage;
  }

  const std::unique_ptr<Health::Stub> stub = Health::NewStub(CreateChannel(addr));
  HealthCheckRequest request;
  request.set_service(service);
  if (watch) return Watch(stub.get(), request, timeout_ms);

  grpc::ClientContext context;
  SetTimeout(&context, timeout_ms);
  HealthCheckResponse response;
  const HealthOutcome outcome = InterpretCheck(stub->Check(&context, request, &response), response);
  (outcome.is_error ? std::cerr : std::cout) << outcome.line << "\n";
  return outcome.exit_code;
}

}  // namespace kiln::bench
