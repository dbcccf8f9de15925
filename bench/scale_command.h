// `kiln-bench scale`: KilnService/SetWorkerCount, one model's worker count at runtime.
#ifndef KILN_BENCH_SCALE_COMMAND_H_
#define KILN_BENCH_SCALE_COMMAND_H_

#include <string>
#include <vector>

namespace kiln::bench {

// Runs the sub-command; `args` are the arguments after "scale". Returns the exit status.
int RunScaleCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_SCALE_COMMAND_H_
