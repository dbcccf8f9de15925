// Processes as /proc shows them, for tests that check which processes live and who their
// parent is (no gRPC: the supervisor's tests use it too).
#ifndef KILN_TESTS_PROCESS_IDENTITY_H_
#define KILN_TESTS_PROCESS_IDENTITY_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace kiln::testing {

// One process as seen in /proc, identified by pid and start time so that a recycled pid is
// never mistaken for the original process.
struct ProcessId {
  pid_t pid = 0;
  uint64_t start_ticks = 0;  // field 22 of /proc/<pid>/stat
};

// The identity of a running process, or std::nullopt when there is none (or only a zombie).
std::optional<ProcessId> Identify(pid_t pid);
// True while `process` exists and is not a zombie (a zombie has exited: only its entry is left).
bool IsAlive(const ProcessId& process);
// The parent pid of `pid` (field 4 of /proc/<pid>/stat), or -1.
pid_t ParentOf(pid_t pid);
// User + system CPU time of every thread of `pid` so far, in ms; -1 when it is gone.
double CpuTimeMs(pid_t pid);

}  // namespace kiln::testing

#endif  // KILN_TESTS_PROCESS_IDENTITY_H_
