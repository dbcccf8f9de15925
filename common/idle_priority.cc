#include "common/idle_priority.h"

#include <dirent.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/text_proto_file.h"

namespace kiln {
namespace {

// The scheduler's account of one thread (/proc/<pid>/task/<tid>/schedstat): time on a CPU and
// time runnable but waiting for one, in ns.
struct SchedStat {
  int64_t cpu_ns = 0;
  int64_t wait_ns = 0;
};

absl::StatusOr<SchedStat> ReadSchedStat(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadWholeFile(path));
  const std::vector<absl::string_view> fields =
      absl::StrSplit(absl::StripAsciiWhitespace(text), ' ', absl::SkipEmpty());
  SchedStat stat;
  if (fields.size() < 2 || !absl::SimpleAtoi(fields[0], &stat.cpu_ns) ||
      !absl::SimpleAtoi(fields[1], &stat.wait_ns)) {
    return absl::InternalError(absl::StrCat(path, " is not \"<cpu ns> <wait ns> <slices>\""));
  }
  return stat;
}

absl::Status SetPolicy(pid_t tid, int policy) {
  const sched_param param{};
  if (sched_setscheduler(tid, policy, &param) == 0) return absl::OkStatus();
  // EPERM: PERMISSION_DENIED; ESRCH (the thread is gone): NOT_FOUND.
  return ErrnoStatus(errno, absl::StrCat("sched_setscheduler(", tid, ", ",
                                         policy == SCHED_IDLE ? "SCHED_IDLE" : "SCHED_OTHER", ")"));
}

}  // namespace

IdleReturn ReturnFromIdleAllowed(bool cap_sys_nice, int64_t rlimit_nice, int nice) {
  if (cap_sys_nice) return {true, "CAP_SYS_NICE"};
  const int64_t needed = 20 - nice;
  if (rlimit_nice < 0 || rlimit_nice >= needed) {
    return {true,
            absl::StrCat("RLIMIT_NICE ", rlimit_nice < 0 ? "unlimited" : absl::StrCat(rlimit_nice),
                         " allows nice ", nice)};
  }
  return {false, absl::StrCat("returning to normal priority needs CAP_SYS_NICE or RLIMIT_NICE >= ",
                              needed, " (nice ", nice, "; RLIMIT_NICE is ", rlimit_nice,
                              "; systemd: LimitNICE=", nice >= 0 ? "+" : "", nice, ")")};
}

bool HasEffectiveCapability(absl::string_view proc_status, int capability) {
  for (absl::string_view line : absl::StrSplit(proc_status, '\n')) {
    if (!absl::ConsumePrefix(&line, "CapEff:")) continue;
    uint64_t mask = 0;
    if (!absl::SimpleHexAtoi(absl::StripAsciiWhitespace(line), &mask)) return false;
    return capability >= 0 && capability < 64 && (mask >> capability & 1) != 0;
  }
  return false;
}

IdleReturn CheckReturnFromIdle(const SystemRoots& roots) {
  const absl::StatusOr<std::string> status =
      ReadWholeFile(absl::StrCat(roots.proc, "/self/status"));
  const bool cap = status.ok() && HasEffectiveCapability(*status, CAP_SYS_NICE);
  rlimit limit{};
  int64_t rlimit_nice = 0;
  if (getrlimit(RLIMIT_NICE, &limit) == 0) {
    rlimit_nice = limit.rlim_cur == RLIM_INFINITY ? -1 : static_cast<int64_t>(limit.rlim_cur);
  }
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, 0);
  return ReturnFromIdleAllowed(cap, rlimit_nice, errno == 0 ? nice : 0);
}

absl::StatusOr<bool> ThreadIsIdle(pid_t tid) {
  const int policy = sched_getscheduler(tid);
  if (policy < 0) {
    return ErrnoStatus(errno, absl::StrCat("sched_getscheduler(", tid, ")"));
  }
  return (policy & ~SCHED_RESET_ON_FORK) == SCHED_IDLE;
}

absl::Status ReturnAllThreadsFromIdle() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) {
    return ErrnoStatus(errno, "cannot list /proc/self/task");
  }
  absl::Status first_error;
  while (const dirent* entry = readdir(dir)) {
    pid_t tid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &tid)) continue;
    absl::Status set = SetPolicy(tid, SCHED_OTHER);
    // A thread that ended since the listing is not an error.
    if (!set.ok() && !absl::IsNotFound(set) && first_error.ok()) {
      first_error = set;
    }
  }
  closedir(dir);
  return first_error;
}

IdleWarming::IdleWarming(const IdleWarmingOptions& options, std::string schedstat_path)
    : options_(options),
      schedstat_path_(std::move(schedstat_path)),
      start_(std::chrono::steady_clock::now()) {}

absl::StatusOr<std::unique_ptr<IdleWarming>> IdleWarming::Start(const IdleWarmingOptions& options) {
  const int policy = sched_getscheduler(0);
  if (policy < 0 || (policy & ~SCHED_RESET_ON_FORK) != SCHED_OTHER) {
    return absl::FailedPreconditionError(
        "the warming thread does not run at normal priority (SCHED_OTHER): its policy is kept");
  }
  // Without the scheduler's account starvation cannot be told from blocking: stay normal.
  std::string path = absl::StrCat("/proc/self/task/", gettid(), "/schedstat");
  if (absl::StatusOr<SchedStat> stat = ReadSchedStat(path); !stat.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot watch for starvation at idle priority (", stat.status().message(), ")"));
  }
  std::unique_ptr<IdleWarming> warming(new IdleWarming(options, std::move(path)));
  // The watchdog first: started now, it inherits normal priority and cannot starve itself.
  warming->watchdog_ = std::thread([w = warming.get()] { w->Watch(); });
  if (absl::Status idle = SetPolicy(0, SCHED_IDLE); !idle.ok()) {
    {
      absl::MutexLock lock(&warming->mu_);
      warming->stop_ = true;
    }
    warming->watchdog_.join();
    warming->finished_ = true;
    return idle;
  }
  return warming;
}

IdleWarming::~IdleWarming() {
  if (!finished_) (void)Finish();
}

void IdleWarming::Watch() {
  // (time, the warming thread's schedstat) samples spanning at least one window.
  std::deque<std::pair<std::chrono::steady_clock::time_point, SchedStat>> samples;
  const absl::Duration interval = absl::FromChrono(options_.window) / 4;
  const int64_t window_ns = std::chrono::nanoseconds(options_.window).count();
  absl::MutexLock lock(&mu_);
  do {
    const absl::StatusOr<SchedStat> stat = ReadSchedStat(schedstat_path_);
    if (!stat.ok()) return;  // the thread is gone: nothing left to watch
    const auto now = std::chrono::steady_clock::now();
    samples.emplace_back(now, *stat);
    while (samples.size() > 2 && now - samples[1].first >= options_.window) samples.pop_front();
    if (now - samples.front().first < options_.window) continue;
    const int64_t cpu = samples.back().second.cpu_ns - samples.front().second.cpu_ns;
    const int64_t wait = samples.back().second.wait_ns - samples.front().second.wait_ns;
    // Starving: it wanted a CPU for at least half the window and got too little of that time.
    // A thread blocked on I/O (or with nothing to do) waits on no run queue: never starving.
    const double share = cpu + wait > 0 ? static_cast<double>(cpu) / (cpu + wait) : 1.0;
    if (wait < window_ns / 2 || share >= options_.min_cpu_share) continue;
    report_.starved = true;
    report_.starved_cpu_share = share;
    idle_until_ = now;
    watchdog_status_ = ReturnAllThreadsFromIdle();
    return;
  } while (!mu_.AwaitWithTimeout(absl::Condition(this, &IdleWarming::StopRequested), interval));
}

IdleWarmingReport IdleWarming::SoFar() const {
  absl::MutexLock lock(&mu_);
  IdleWarmingReport report = report_;
  const auto until = report_.starved ? idle_until_ : std::chrono::steady_clock::now();
  report.idle_ms = std::chrono::duration<double, std::milli>(until - start_).count();
  return report;
}

absl::StatusOr<IdleWarmingReport> IdleWarming::Finish() {
  finished_ = true;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (watchdog_.joinable()) watchdog_.join();
  const absl::Status returned = ReturnAllThreadsFromIdle();
  const IdleWarmingReport report = SoFar();
  RETURN_IF_ERROR(returned);
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(watchdog_status_);
  return report;
}

}  // namespace kiln
