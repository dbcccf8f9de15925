// common/cpu_probe: CFS quotas read from fake cgroup v1 and v2 trees, the choice of the usable
// CPUs, and the real probes: this process's affinity mask narrowed in a child, and a real cgroup
// with a CPU quota (skipped where none can be made).
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/cpu_probe.h"
#include "common/process.h"
#include "tests/fake_system.h"
#include "tests/run_command.h"
#include "tests/skip.h"
#include "tests/test_cgroup.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using kiln::testing::FakeSystem;
using kiln::testing::TempDir;

// --- quotas from fake trees ------------------------------------------------------------------

TEST_CASE("cpu quota v1: a joint cpu,cpuacct mount, the quota over the period", "[quota]") {
  FakeSystem sys;
  sys.SelfCgroup("5:cpu,cpuacct:/kubepods/pod1/c1\n4:memory:/kubepods/pod1/c1\n0::/\n");
  sys.Cgroup("cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
  sys.Cgroup("cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  const std::string file = sys.Cgroup("cpu,cpuacct/kubepods/pod1/c1/cpu.cfs_quota_us", "150000\n");
  sys.Cgroup("cpu,cpuacct/kubepods/pod1/c1/cpu.cfs_period_us", "100000\n");
  const std::optional<CgroupCpuQuota> quota = TightestCgroupCpuQuota(sys.roots());
  REQUIRE(quota.has_value());
  CHECK(quota->quota_us == 150000);
  CHECK(quota->period_us == 100000);
  CHECK(quota->cpus() == Approx(1.5));
  CHECK(quota->file == file);
}

TEST_CASE("cpu quota v1: -1 everywhere is no quota", "[quota]") {
  FakeSystem sys;
  sys.SelfCgroup("1:cpu:/svc\n");
  sys.Cgroup("cpu/cpu.cfs_quota_us", "-1\n");
  sys.Cgroup("cpu/cpu.cfs_period_us", "100000\n");
  sys.Cgroup("cpu/svc/cpu.cfs_quota_us", "-1\n");
  sys.Cgroup("cpu/svc/cpu.cfs_period_us", "100000\n");
  CHECK_FALSE(TightestCgroupCpuQuota(sys.roots()).has_value());
}

TEST_CASE("cpu quota v1: an ancestor's tighter quota wins over the process's own", "[quota]") {
  FakeSystem sys;
  sys.SelfCgroup("1:cpu:/a/b\n");
  const std::string parent = sys.Cgroup("cpu/a/cpu.cfs_quota_us", "25000\n");
  sys.Cgroup("cpu/a/cpu.cfs_period_us", "50000\n");
  sys.Cgroup("cpu/a/b/cpu.cfs_quota_us", "400000\n");
  sys.Cgroup("cpu/a/b/cpu.cfs_period_us", "100000\n");
  const std::optional<CgroupCpuQuota> quota = TightestCgroupCpuQuota(sys.roots());
  REQUIRE(quota.has_value());
  CHECK(quota->cpus() == Approx(0.5));
  CHECK(quota->file == parent);
}

TEST_CASE("cpu quota v2: cpu.max, max meaning none, nested limits", "[quota]") {
  FakeSystem sys;
  sys.SelfCgroup("0::/system.slice/kiln.service\n");
  sys.Cgroup("system.slice/cpu.max", "max 100000\n");
  SECTION("none") {
    sys.Cgroup("system.slice/kiln.service/cpu.max", "max 100000\n");
    CHECK_FALSE(TightestCgroupCpuQuota(sys.roots()).has_value());
  }
  SECTION("the service's own") {
    const std::string file = sys.Cgroup("system.slice/kiln.service/cpu.max", "250000 100000\n");
    const std::optional<CgroupCpuQuota> quota = TightestCgroupCpuQuota(sys.roots());
    REQUIRE(quota.has_value());
    CHECK(quota->cpus() == Approx(2.5));
    CHECK(quota->file == file);
  }
  SECTION("the slice's, tighter") {
    sys.Cgroup("system.slice/kiln.service/cpu.max", "250000 100000\n");
    const std::string file = sys.Cgroup("system.slice/cpu.max", "100000 100000\n");
    const std::optional<CgroupCpuQuota> quota = TightestCgroupCpuQuota(sys.roots());
    REQUIRE(quota.has_value());
    CHECK(quota->cpus() == Approx(1.0));
    CHECK(quota->file == file);
  }
  SECTION("a quota without a period uses the kernel's default of 100 ms") {
    sys.Cgroup("system.slice/kiln.service/cpu.max", "50000\n");
    const std::optional<CgroupCpuQuota> quota = TightestCgroupCpuQuota(sys.roots());
    REQUIRE(quota.has_value());
    CHECK(quota->cpus() == Approx(0.5));
  }
}

TEST_CASE("cpu quota: malformed files count as no quota", "[quota]") {
  FakeSystem sys;
  sys.SelfCgroup("1:cpu:/x\n0::/y\n");
  sys.Cgroup("cpu/x/cpu.cfs_quota_us", "lots\n");
  sys.Cgroup("cpu/x/cpu.cfs_period_us", "100000\n");
  sys.Cgroup("y/cpu.max", "50000 0\n");
  SECTION("both malformed") { CHECK_FALSE(TightestCgroupCpuQuota(sys.roots()).has_value()); }
  SECTION("a v1 quota without its period") {
    FakeSystem other;
    other.SelfCgroup("1:cpu:/x\n");
    other.Cgroup("cpu/x/cpu.cfs_quota_us", "50000\n");
    CHECK_FALSE(TightestCgroupCpuQuota(other.roots()).has_value());
  }
}

TEST_CASE("cpu quota hybrid: the tightest of v1 and v2", "[quota]") {
  FakeSystem sys;
  sys.SelfCgroup("2:cpu,cpuacct:/svc\n0::/svc\n");
  sys.Cgroup("cpu,cpuacct/svc/cpu.cfs_quota_us", "300000\n");
  sys.Cgroup("cpu,cpuacct/svc/cpu.cfs_period_us", "100000\n");
  const std::string v2 = sys.Cgroup("unified/svc/cpu.max", "200000 100000\n");
  const std::optional<CgroupCpuQuota> quota = TightestCgroupCpuQuota(sys.roots());
  REQUIRE(quota.has_value());
  CHECK(quota->cpus() == Approx(2.0));
  CHECK(quota->file == v2);
}

TEST_CASE("cpu quota: no /proc/self/cgroup is no quota", "[quota]") {
  FakeSystem sys;
  sys.Cgroup("cpu.max", "100000 100000\n");
  CHECK_FALSE(TightestCgroupCpuQuota(sys.roots()).has_value());
}

// --- the usable CPUs -------------------------------------------------------------------------

CgroupCpuQuota Quota(int64_t quota_us, int64_t period_us) {
  return CgroupCpuQuota{quota_us, period_us, "/sys/fs/cgroup/x/cpu.max"};
}

TEST_CASE("the usable CPUs: affinity and the quota rounded down, at least 1", "[limit]") {
  CHECK(ChooseCpuLimit(8, Quota(250000, 100000)).cpus == 2);
  CHECK(ChooseCpuLimit(1, Quota(400000, 100000)).cpus == 1);
  CHECK(ChooseCpuLimit(4, Quota(50000, 100000)).cpus == 1);
  CHECK(ChooseCpuLimit(3, std::nullopt).cpus == 3);
  CHECK(ChooseCpuLimit(0, Quota(200000, 100000)).cpus == 2);  // affinity unknown
  CHECK(ChooseCpuLimit(0, std::nullopt).cpus == 1);
  CHECK(ChooseCpuLimit(4, Quota(int64_t{1} << 50, 1)).cpus == 4);  // a huge quota bounds nothing
  CHECK(ChooseCpuLimit(0, Quota(int64_t{1} << 50, 1)).cpus == 1);  // nor with no affinity

  CHECK(ChooseCpuLimit(2, std::nullopt).Describe() == "2 CPUs (affinity 2 CPUs, no CFS quota)");
  CHECK(ChooseCpuLimit(2, Quota(150000, 100000)).Describe() ==
        "1 CPU (CFS quota 1.50 CPUs from /sys/fs/cgroup/x/cpu.max, rounded down; affinity 2 "
        "CPUs)");
}

// Runs `probe` in a forked child (it changes the process: its affinity, its cgroup) and returns
// what it returned, or "" when the child failed.
template <typename Probe>
std::string InChild(Probe probe) {
  const testing::CommandResult child = testing::RunInChild([&probe](std::string* output) {
    *output = probe();
    return 0;
  });
  return child.exit_code == 0 ? child.output : "";
}

TEST_CASE("the affinity mask: counted, and narrowed by sched_setaffinity", "[limit][proc]") {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  REQUIRE(sched_getaffinity(0, sizeof(mask), &mask) == 0);
  const absl::StatusOr<int> count = AffinityCpuCount();
  REQUIRE(count.ok());
  CHECK(*count == CPU_COUNT(&mask));

  const std::string one = InChild([&mask] {
    int first = 0;
    while (!CPU_ISSET(first, &mask)) ++first;
    cpu_set_t single;
    CPU_ZERO(&single);
    CPU_SET(first, &single);
    if (sched_setaffinity(0, sizeof(single), &single) != 0)
      return std::string("setaffinity failed");
    const absl::StatusOr<int> narrowed = AffinityCpuCount();
    const CpuLimit limit = ProcessCpuLimit();
    return absl::StrCat(narrowed.ok() ? *narrowed : -1, " ", limit.cpus, " ", limit.affinity_cpus);
  });
  CHECK(one == "1 1 1");
}

TEST_CASE("a real cgroup with a CPU quota: the probe finds it and rounds it down",
          "[limit][cgroup]") {
  absl::StatusOr<std::unique_ptr<testing::TestCgroup>> cgroup =
      testing::TestCgroup::CreateCpu(/*quota_us=*/150000, /*period_us=*/100000);
  if (!cgroup.ok()) KILN_SKIP(cgroup.status().message());
  const std::string procs = (*cgroup)->dir() + "/cgroup.procs";
  const std::string seen = InChild([&procs] {
    FILE* file = std::fopen(procs.c_str(), "w");
    if (file == nullptr || std::fprintf(file, "%d\n", getpid()) < 0 || std::fclose(file) != 0) {
      return std::string("cannot join ") + procs;
    }
    const CpuLimit limit = ProcessCpuLimit();
    if (!limit.quota.has_value()) return std::string("no quota found");
    return absl::StrCat(limit.cpus, " ", limit.quota->quota_us, "/", limit.quota->period_us, " ",
                        limit.quota->file);
  });
  CHECK(seen == absl::StrCat("1 150000/100000 ", (*cgroup)->limit_file()));
}

TEST_CASE("InCgroup runs a command inside the cgroup, with the pid it was spawned as",
          "[limit][cgroup]") {
  absl::StatusOr<std::unique_ptr<testing::TestCgroup>> cgroup =
      testing::TestCgroup::CreateCpu(100000);
  if (!cgroup.ok()) KILN_SKIP(cgroup.status().message());
  TempDir dir;
  const std::string log = dir.path() + "/out.log";
  // The command prints its own pid and its cgroup lines.
  const absl::StatusOr<pid_t> pid = SpawnInProcessGroup(
      InCgroup((*cgroup)->dir(), {"/bin/sh", "-c", "echo $$; cat /proc/self/cgroup"}), nullptr,
      log);
  REQUIRE(pid.ok());
  int status = 0;
  REQUIRE(waitpid(*pid, &status, 0) == *pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  std::ifstream in(log);
  std::string first_line;
  std::getline(in, first_line);
  CHECK(first_line == std::to_string(*pid));
  const std::string rest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string name = (*cgroup)->dir().substr((*cgroup)->dir().rfind('/'));
  CHECK(rest.find(name) != std::string::npos);
}

}  // namespace
}  // namespace kiln
