// `kiln-bench health`: grpc.health.v1 Check or Watch, a stand-in for grpc_health_probe (which
// Debian does not package). Exit status 0 only for SERVING.
#ifndef KILN_BENCH_HEALTH_COMMAND_H_
#define KILN_BENCH_HEALTH_COMMAND_H_

#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "proto/grpc/health/v1/health.pb.h"

namespace kiln::bench {

// "SERVING", "NOT_SERVING", "UNKNOWN", "SERVICE_UNKNOWN"; "STATUS_<n>" for any other value.
std::string ServingStatusName(int status);

// What one Check's result means for the user: the line to print (stdout for a status, stderr
// for an RPC error) and the exit status (0 only for SERVING). NOT_FOUND is how a server
// answers Check for a service it does not know: it reads as SERVICE_UNKNOWN.
struct HealthOutcome {
  std::string line;
  bool is_error = false;  // print to stderr
  int exit_code = 1;
};
HealthOutcome InterpretCheck(const grpc::Status& status,
                             const grpc::health::v1::HealthCheckResponse& response);

// Runs the sub-command; `args` are the arguments after "health". Returns the exit status.
int RunHealthCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_HEALTH_COMMAND_H_
