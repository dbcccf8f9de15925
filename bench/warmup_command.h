// `kiln-bench warmup`: asks kiln.KilnService/WarmupReport (proto/kiln_service.proto) what the
// server's startup did and what serving has met since, and prints it as tables (or as JSON).
#ifndef KILN_BENCH_WARMUP_COMMAND_H_
#define KILN_BENCH_WARMUP_COMMAND_H_

#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "proto/kiln_service.pb.h"

namespace kiln::bench {

// The report as text: the startup timeline (phase, duration ms, since start ms), the memory
// limit, then per model its worker budget, replayed shapes and serving counters, and per worker
// its warmup time, peak and baseline anonymous memory, tokenizer timings and one row per warmed
// shape (batch, seq, first ms, steady p50 ms, first/steady, calls, settled after, peak RSS MB; a
// refused shape reads "REFUSED (projected N MB)"). MB are 10^6 bytes, as in the server's log.
std::string FormatWarmupReport(const WarmupReportResponse& response);

// The report as pretty-printed JSON with the proto's field names (snake_case) and every field,
// zero or not; int64 fields are strings, as the proto3 JSON mapping has it. Ends with "\n".
absl::StatusOr<std::string> WarmupReportJson(const WarmupReportResponse& response);

// The one-line error for a failed WarmupReport RPC, with a hint for UNIMPLEMENTED (a server
// without KilnService) and NOT_FOUND (an unknown --model).
std::string WarmupRpcError(const grpc::Status& status, const std::string& model);

// Runs the sub-command; `args` are the arguments after "warmup". Returns the exit status: 0 the
// report was printed, 1 the RPC failed, 2 bad flags.
int RunWarmupCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_WARMUP_COMMAND_H_
