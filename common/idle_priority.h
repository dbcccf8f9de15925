// Warming at idle CPU priority (docs/ARCHITECTURE.md, "Processes"): a worker that warms
// while something else on the machine serves (the server's other workers, another replica) takes
// only the CPU left over, so the neighbour's tail latency stays flat, and goes back to normal
// priority before it takes real traffic (the master's Promote frame).
//
// Linux's SCHED_IDLE runs a thread only when nothing else wants the CPU (weight 3 against 1024 for
// a nice-0 thread). Lowering a thread to it needs no privilege; going back to SCHED_OTHER needs
// CAP_SYS_NICE or an RLIMIT_NICE that allows the thread's nice value (sched(7):
// RLIMIT_NICE >= 20 - nice; systemd: LimitNICE=+0). Without either a worker would serve at idle
// priority forever, so the master checks first (CheckReturnFromIdle) and warms at normal priority
// when it cannot come back.
//
// Beside a neighbour that never idles (a CPU-bound batch job, or a replica already at 100 %),
// idle priority would starve warmup for good. IdleWarming therefore watches the scheduler's
// account of the warming thread (/proc/self/task/<tid>/schedstat: time on a CPU, time runnable
// but waiting for one). When over a whole `window` it waited at least half the window and got
// less than `min_cpu_share` of the time it wanted a CPU, it returns to normal priority at once,
// warms with its fair share, and says so. A thread blocked on I/O waits on no run queue, so
// a cold page cache is never taken for starvation.
#ifndef KILN_COMMON_IDLE_PRIORITY_H_
#define KILN_COMMON_IDLE_PRIORITY_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/cgroup_files.h"

namespace kiln {

// Whether threads of this process may return from SCHED_IDLE to SCHED_OTHER.
struct IdleReturn {
  bool allowed = false;
  // How: "CAP_SYS_NICE" or "RLIMIT_NICE 20 allows nice 0"; or why not.
  std::string how;
};

// The kernel's rule (kernel/sched/core.c, can_nice): allowed with CAP_SYS_NICE, or when
// 20 - nice <= RLIMIT_NICE's soft limit (`rlimit_nice` < 0: unlimited).
IdleReturn ReturnFromIdleAllowed(bool cap_sys_nice, int64_t rlimit_nice, int nice);

// True when the "CapEff:" line of a /proc/<pid>/status text has bit `capability` set.
bool HasEffectiveCapability(absl::string_view proc_status, int capability);

// ReturnFromIdleAllowed for this process: CapEff of <proc>/self/status, getrlimit(RLIMIT_NICE)
// and getpriority.
IdleReturn CheckReturnFromIdle(const SystemRoots& roots = {});

// SCHED_IDLE (true) or not, for one thread (a tid; 0 = the calling thread).
absl::StatusOr<bool> ThreadIsIdle(pid_t tid = 0);

// Every thread of this process (<proc>/self/task) to SCHED_OTHER; threads that exit meanwhile
// are skipped. An error names the first thread that could not be changed.
absl::Status ReturnAllThreadsFromIdle();

struct IdleWarmingOptions {
  // Of the time the warming thread wanted a CPU over `window`: less is starving.
  double min_cpu_share = 0.1;
  std::chrono::milliseconds window{1000};
};

struct IdleWarmingReport {
  double idle_ms = 0;  // how long the process ran at idle priority
  // It got less than min_cpu_share of the CPU time it waited for over a whole window and went
  // back to normal priority early; `starved_cpu_share` is what it got in that window.
  bool starved = false;
  double starved_cpu_share = 0;
};

// Runs the calling thread, and the threads it starts from then on (they inherit the policy), at
// SCHED_IDLE until Finish(), with a watchdog thread (at normal priority) that returns every thread
// of the process to SCHED_OTHER early when the process starves.
//
// Ownership: owns the watchdog thread; Finish() (or the destructor) stops and joins it.
// Thread-safety: Start and Finish from the thread that warms; the watchdog takes mu_.
class IdleWarming {
 public:
  // Starts the watchdog, then moves the calling thread to SCHED_IDLE. FailedPrecondition
  // (changing nothing) when the thread does not run at SCHED_OTHER (an operator's policy is
  // kept) or its schedstat cannot be read (starvation could not be seen); another error when the
  // thread cannot be moved.
  static absl::StatusOr<std::unique_ptr<IdleWarming>> Start(const IdleWarmingOptions& options);
  ~IdleWarming();
  IdleWarming(const IdleWarming&) = delete;
  IdleWarming& operator=(const IdleWarming&) = delete;

  // What happened so far: idle_ms up to now (or up to starving), and whether it starved.
  IdleWarmingReport SoFar() const;

  // Stops the watchdog and returns every thread to SCHED_OTHER (again, if it starved: threads may
  // have started since). An error when a thread cannot return (then it stays idle: the caller
  // must not serve). Call once.
  absl::StatusOr<IdleWarmingReport> Finish();

 private:
  IdleWarming(const IdleWarmingOptions& options, std::string schedstat_path);
  void Watch();
  bool StopRequested() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_; }

  const IdleWarmingOptions options_;
  const std::string schedstat_path_;  // the warming thread's
  const std::chrono::steady_clock::time_point start_;
  std::thread watchdog_;
  bool finished_ = false;  // the warming thread's own

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  IdleWarmingReport report_ ABSL_GUARDED_BY(mu_);
  absl::Status watchdog_status_ ABSL_GUARDED_BY(mu_);                      // a failed early return
  std::chrono::steady_clock::time_point idle_until_ ABSL_GUARDED_BY(mu_);  // set once starved
};

}  // namespace kiln

#endif  // KILN_COMMON_IDLE_PRIORITY_H_
