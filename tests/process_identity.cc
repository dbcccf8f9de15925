#include "tests/process_identity.h"

#include <unistd.h>

#include <string>
#include <vector>

#include "common/process.h"

namespace kiln::testing {

std::optional<ProcessId> Identify(pid_t pid) {
  const std::vector<std::string> fields = ProcStatFields(pid);
  if (fields.size() < 20 || fields[0] == "Z" || fields[0] == "X") return std::nullopt;
  return ProcessId{pid, std::stoull(fields[22 - 3])};
}

bool IsAlive(const ProcessId& process) {
  const std::optional<ProcessId> now = Identify(process.pid);
  return now.has_value() && now->start_ticks == process.start_ticks;
}

pid_t ParentOf(pid_t pid) {
  const std::vector<std::string> fields = ProcStatFields(pid);
  return fields.size() < 2 ? -1 : static_cast<pid_t>(std::stol(fields[4 - 3]));
}

double CpuTimeMs(pid_t pid) {
  const std::vector<std::string> fields = ProcStatFields(pid);
  if (fields.size() < 20) return -1;
  const double ticks = std::stod(fields[14 - 3]) + std::stod(fields[15 - 3]);
  return ticks * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace kiln::testing
