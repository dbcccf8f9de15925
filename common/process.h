// Child processes as kiln-bench coldstart and the integration tests start and watch them: a
// command spawned in a process group of its own with its output in a log file, its exit peeked
// at without reaping it, its process tree read from /proc, a free loopback port for it to listen
// on, and polling for a condition instead of fixed sleeps.
//
// Ownership: nothing here owns a process; whoever spawns a child owns it (and must reap it).
// Thread-safety: every function may be called from any thread. The /proc readers take snapshots:
// processes may come and go while they read.
#ifndef KILN_COMMON_PROCESS_H_
#define KILN_COMMON_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln {

// --- starting a child --------------------------------------------------------------------------

// Forks and execs `argv` (argv[0] a path: no $PATH search) as the leader of a process group of
// its own (setpgid in both the parent and the child, so the group exists as soon as this
// returns), with stdin from /dev/null and stdout and stderr to the file at `log_path`
// (truncated), every signal reset to its default and unblocked, and PR_SET_PDEATHSIG(SIGKILL):
// the child is killed if the calling thread exits, and exits at once (code 1) if this process
// died before that took effect. `env` ("NAME=value" entries) is the child's whole environment;
// nullptr: it inherits this one's.
//
// Safe in a multi-threaded process: everything the child needs is prepared before fork(), after
// which the child makes only async-signal-safe calls. Fails when argv is empty, the log or
// /dev/null cannot be opened, or fork fails; an exec failure shows as exit code 127 and a line
// "exec of <argv[0]> failed (errno N)" in the log. Returns the child's pid (== its group id).
absl::StatusOr<pid_t> SpawnInProcessGroup(const std::vector<std::string>& argv,
                                          const std::vector<std::string>* env,
                                          const std::string& log_path);

// `argv` run by /bin/sh, which first moves itself into the cgroup at `cgroup_dir` (writes its pid
// to <cgroup_dir>/cgroup.procs, v1 or v2) and then execs argv[0]: the command and everything it
// starts run in that cgroup, under its limits, with the pid the spawner knows. If the write fails,
// sh says why on stderr and the command does not run (exit code 2 from sh).
std::vector<std::string> InCgroup(const std::string& cgroup_dir, std::vector<std::string> argv);

// How a process ended: its exit code, or the signal that killed it.
struct ExitStatus {
  bool signaled = false;
  int code = 0;  // the exit code, or the signal number when `signaled`
  // "exit code 3", "killed by signal 9 (Killed)".
  std::string Describe() const;
  bool operator==(const ExitStatus& other) const {
    return signaled == other.signaled && code == other.code;
  }
};

// How the child `pid` of this process ended, once it has, without reaping it (waitid WNOWAIT):
// it stays a zombie, so its pid (and a group id equal to it) cannot be reused until it is
// reaped. std::nullopt while it runs (or when it is no child of this process).
std::optional<ExitStatus> PeekChildExit(pid_t pid);

// Reaps the child `pid` if it has exited: true once it is reaped, or is no child of this process
// (nothing left to reap); false while it runs.
bool TryReapChild(pid_t pid);
// Waits up to `grace` for the child `pid` to exit, then kills it (SIGKILL), and reaps it.
void ReapChild(pid_t pid, std::chrono::milliseconds grace);

// For a subreaper (prctl PR_SET_CHILD_SUBREAPER): reaps every exited child of this process that is
// not in `owned` (those are waited for by their owners), and returns them with how each ended.
// One waitid(WNOWAIT) peek a child: it stops at the first exited child that is owned, which its
// owner reaps.
std::vector<std::pair<pid_t, ExitStatus>> ReapAdoptedChildren(const std::set<pid_t>& owned);

// --- /proc -------------------------------------------------------------------------------------

// The fields of /proc/<pid>/stat after the command name: [0] is field 3 (state), so field n is
// at index n - 3. Empty when the process does not exist.
std::vector<std::string> ProcStatFields(pid_t pid);

// How long ago this process started (/proc/self/stat's starttime, in clock ticks, against
// CLOCK_BOOTTIME: its fork, to the tick), in seconds; nullopt when /proc cannot say.
std::optional<double> SecondsSinceProcessStart();

// The children of every thread of `pid` (/proc/<pid>/task/*/children); empty when it is gone.
std::vector<pid_t> ChildrenOf(pid_t pid);

// `root` and all its descendants, root first, each once; empty when `root` does not exist.
std::vector<pid_t> ProcessTree(pid_t root);

// --- odds and ends -----------------------------------------------------------------------------

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
absl::StatusOr<int> FreeLoopbackPort();

// Polls `done` every `interval` until it returns true or `timeout` passes; returns the last
// value. The synchronisation to use instead of fixed sleeps.
template <typename Predicate>
bool PollUntil(Predicate done, std::chrono::milliseconds timeout,
               std::chrono::milliseconds interval = std::chrono::milliseconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

}  // namespace kiln

#endif  // KILN_COMMON_PROCESS_H_
