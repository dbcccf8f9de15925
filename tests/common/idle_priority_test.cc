// common/idle_priority and common/openmp_wait: the kernel's rule for returning from SCHED_IDLE,
// capabilities parsed from /proc, warming at idle priority for real (threads started meanwhile
// inherit it, every thread returns), starvation beside a busy thread on the same CPU and none
// while blocked; and what the log says about OpenMP waiting.
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "common/idle_priority.h"
#include "common/openmp_wait.h"
#include "tests/run_command.h"
#include "tests/skip.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

TEST_CASE("returning from idle: CAP_SYS_NICE, or RLIMIT_NICE >= 20 - nice", "[idle]") {
  CHECK(ReturnFromIdleAllowed(true, 0, 0).allowed);
  CHECK(ReturnFromIdleAllowed(true, 0, 0).how == "CAP_SYS_NICE");
  CHECK(ReturnFromIdleAllowed(false, 20, 0).allowed);
  CHECK(ReturnFromIdleAllowed(false, 20, 0).how == "RLIMIT_NICE 20 allows nice 0");
  CHECK(ReturnFromIdleAllowed(false, 15, 5).allowed);
  CHECK(ReturnFromIdleAllowed(false, -1, 0).allowed);  // unlimited
  const IdleReturn refused = ReturnFromIdleAllowed(false, 19, 0);
  CHECK_FALSE(refused.allowed);
  CHECK(refused.how ==
        "returning to normal priority needs CAP_SYS_NICE or RLIMIT_NICE >= 20 (nice 0; "
        "RLIMIT_NICE is 19; systemd: LimitNICE=+0)");
  CHECK_FALSE(ReturnFromIdleAllowed(false, 0, 19).allowed);
  CHECK_THAT(ReturnFromIdleAllowed(false, 0, -5).how, Contains("LimitNICE=-5"));
}

TEST_CASE("capabilities: the CapEff line of /proc/<pid>/status", "[idle]") {
  const int kSysNice = 23;
  CHECK(HasEffectiveCapability("Name:\tx\nCapInh:\t0\nCapEff:\t0000000000800000\n", kSysNice));
  CHECK(HasEffectiveCapability("CapEff:\t000001ffffffffff\n", kSysNice));
  CHECK_FALSE(HasEffectiveCapability("CapEff:\t000001ffff7fffff\n", kSysNice));
  CHECK_FALSE(HasEffectiveCapability("CapPrm:\t000001ffffffffff\n", kSysNice));
  CHECK_FALSE(HasEffectiveCapability("CapEff:\tnot hex\n", kSysNice));
  CHECK_FALSE(HasEffectiveCapability("CapEff:\tffffffffffffffff\n", 64));
}

// Why this process could not come back from idle priority; empty where it could.
std::string CannotTryIdle() {
  const IdleReturn back = CheckReturnFromIdle();
  return back.allowed ? "" : back.how;
}

TEST_CASE("warming at idle: the thread and those it starts are idle, and all return",
          "[idle][sched]") {
  if (const std::string why = CannotTryIdle(); !why.empty()) KILN_SKIP(why);
  // In a thread of its own, so that this test's main thread keeps its priority whatever happens.
  std::atomic<int> failures{0};
  std::string trace;
  std::thread warming([&] {
    absl::StatusOr<std::unique_ptr<IdleWarming>> idle = IdleWarming::Start({});
    if (!idle.ok()) {
      trace = std::string(idle.status().message());
      ++failures;
      return;
    }
    if (ThreadIsIdle(0).value_or(false) != true) ++failures;
    // A thread started while idle inherits it, and is still alive when Finish returns.
    std::atomic<bool> started_idle{false};
    std::atomic<bool> release{false};
    std::atomic<pid_t> tid{0};
    std::thread child([&] {
      tid = gettid();
      started_idle = ThreadIsIdle(0).value_or(false);
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    while (tid == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    absl::StatusOr<IdleWarmingReport> report = (*idle)->Finish();
    if (!report.ok()) {
      trace = std::string(report.status().message());
      ++failures;
    } else if (report->idle_ms <= 0) {
      ++failures;
    }
    if (!started_idle) ++failures;
    if (ThreadIsIdle(0).value_or(true)) ++failures;
    if (ThreadIsIdle(tid).value_or(true)) ++failures;
    release = true;
    child.join();
  });
  warming.join();
  INFO(trace);
  CHECK(failures == 0);
}

// Runs `body` in a forked child pinned to one CPU; its exit code (-1 when it did not exit).
template <typename Body>
int PinnedChild(Body body) {
  return testing::RunInChild([&body](std::string*) {
           cpu_set_t mask;
           CPU_ZERO(&mask);
           if (sched_getaffinity(0, sizeof(mask), &mask) != 0) return 90;
           int first = 0;
           while (!CPU_ISSET(first, &mask)) ++first;
           CPU_ZERO(&mask);
           CPU_SET(first, &mask);
           if (sched_setaffinity(0, sizeof(mask), &mask) != 0) return 91;
           return body();
         })
      .exit_code;
}

TEST_CASE("warming at idle beside a busy thread on the same CPU starves, and returns early",
          "[idle][sched]") {
  if (const std::string why = CannotTryIdle(); !why.empty()) KILN_SKIP(why);
  const int code = PinnedChild([] {
    // A busy neighbour at normal priority on the same CPU, started before warming begins.
    std::atomic<bool> stop{false};
    std::thread busy([&stop] {
      while (!stop) {
      }
    });
    IdleWarmingOptions options;
    options.window = std::chrono::milliseconds(400);
    absl::StatusOr<std::unique_ptr<IdleWarming>> idle = IdleWarming::Start(options);
    if (!idle.ok()) return 10;
    // Warm (spin) until the watchdog returned this thread to normal priority, at most 30 s.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (ThreadIsIdle(0).value_or(false) && std::chrono::steady_clock::now() < deadline) {
    }
    absl::StatusOr<IdleWarmingReport> report = (*idle)->Finish();
    stop = true;
    busy.join();
    if (!report.ok()) return 11;
    if (!report->starved) return 12;
    if (report->starved_cpu_share >= options.min_cpu_share) return 13;
    if (report->idle_ms < 400) return 14;  // not before one whole window
    return 0;
  });
  CHECK(code == 0);
}

TEST_CASE("warming at idle while blocked is not starving", "[idle][sched]") {
  if (const std::string why = CannotTryIdle(); !why.empty()) KILN_SKIP(why);
  const int code = PinnedChild([] {
    IdleWarmingOptions options;
    options.window = std::chrono::milliseconds(200);
    absl::StatusOr<std::unique_ptr<IdleWarming>> idle = IdleWarming::Start(options);
    if (!idle.ok()) return 10;
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // blocked: on no run queue
    absl::StatusOr<IdleWarmingReport> report = (*idle)->Finish();
    if (!report.ok()) return 11;
    return report->starved ? 12 : 0;
  });
  CHECK(code == 0);
}

TEST_CASE("warming at idle keeps an operator's own policy", "[idle][sched]") {
  const int code = PinnedChild([] {
    const sched_param param{};
    if (sched_setscheduler(0, SCHED_BATCH, &param) != 0) return 10;
    absl::StatusOr<std::unique_ptr<IdleWarming>> idle = IdleWarming::Start({});
    if (idle.ok()) return 11;
    if (!absl::IsFailedPrecondition(idle.status())) return 12;
    return sched_getscheduler(0) == SCHED_BATCH ? 0 : 13;
  });
  CHECK(code == 0);
}

// --- OpenMP waiting ------------------------------------------------------------------------

// Sets (value non-null) or removes an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value != nullptr) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_, old_.c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

TEST_CASE("OpenMP waiting: what kiln set, the operator's setting, or libgomp's default",
          "[openmp]") {
  SECTION("set by kiln before libgomp read it: no re-exec") {
    ScopedEnv policy("OMP_WAIT_POLICY", nullptr);
    ScopedEnv marker(kOpenMpWaitMarker, nullptr);
    ScopedEnv spin("GOMP_SPINCOUNT", nullptr);
    char name[] = "cpu_test";
    char* argv[] = {name, nullptr};
    EnsurePassiveOpenMpWait(argv, /*libgomp_told_passive=*/true);  // would re-execute otherwise
    CHECK(std::string(std::getenv("OMP_WAIT_POLICY")) == "PASSIVE");
    CHECK(DescribeOpenMpWait() ==
          "passive (OMP_WAIT_POLICY=PASSIVE, set by kiln before libgomp read it)");
    CHECK_FALSE(OpenMpThreadsSpin());
  }
  SECTION("set by kiln: re-executed") {
    ScopedEnv policy("OMP_WAIT_POLICY", "PASSIVE");
    ScopedEnv marker(kOpenMpWaitMarker, "1");
    ScopedEnv spin("GOMP_SPINCOUNT", nullptr);
    CHECK(DescribeOpenMpWait() ==
          "passive (OMP_WAIT_POLICY=PASSIVE, set by kiln: the binary re-executed itself once)");
    CHECK_FALSE(OpenMpThreadsSpin());
  }
  SECTION("the operator's") {
    ScopedEnv policy("OMP_WAIT_POLICY", "active");
    ScopedEnv marker(kOpenMpWaitMarker, nullptr);
    ScopedEnv spin("GOMP_SPINCOUNT", "300000");
    CHECK(DescribeOpenMpWait() ==
          "OMP_WAIT_POLICY=active GOMP_SPINCOUNT=300000 from the environment (the operator's "
          "setting, kept)");
    // Ensure does nothing (it would re-execute this test binary otherwise).
    char name[] = "cpu_test";
    char* argv[] = {name, nullptr};
    EnsurePassiveOpenMpWait(argv);
    CHECK(std::string(std::getenv("OMP_WAIT_POLICY")) == "active");
    CHECK(OpenMpThreadsSpin());
    ScopedEnv no_spin("GOMP_SPINCOUNT", "0");  // wins over the policy, as in libgomp
    CHECK_FALSE(OpenMpThreadsSpin());
  }
  SECTION("none") {
    ScopedEnv policy("OMP_WAIT_POLICY", nullptr);
    ScopedEnv marker(kOpenMpWaitMarker, nullptr);
    ScopedEnv spin("GOMP_SPINCOUNT", nullptr);
    CHECK_THAT(DescribeOpenMpWait(), StartsWith("libgomp's default"));
    CHECK(OpenMpThreadsSpin());
  }
}

}  // namespace
}  // namespace kiln
