// `kiln-bench load`: an open- or closed-loop load generator for one model. Open loop: requests on
// a constant or Poisson schedule at --rate, each sent at its time whether or not earlier ones
// returned, latency counted from the scheduled time (no coordinated omission). Closed loop:
// --concurrency requests in flight, each slot sending again as soon as its request returns.
// The logic lives in bench/load_generator.h; this file is flags, gRPC and output files.
#ifndef KILN_BENCH_LOAD_COMMAND_H_
#define KILN_BENCH_LOAD_COMMAND_H_

#include <string>
#include <vector>

namespace kiln::bench {

// Runs the sub-command; `args` are the arguments after "load". Returns the exit status:
// kExitOk when the run completed (even with request errors: they are reported), kExitFailure
// when it could not run (metadata RPC failed, unusable model, an output file not writable),
// kExitUsage for bad flags.
int RunLoadCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_LOAD_COMMAND_H_
