// common/memory_probe and common/memory_budget: cgroup limits read from fake v1 and v2 trees, the
// real /proc probes (VmRSS, VmHWM and its reset), the per-worker budget, the shape memory model
// and the master's room check.
#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/memory_budget.h"
#include "common/memory_probe.h"
#include "tests/fake_system.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::FakeSystem;
using kiln::testing::TempDir;

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr char kV1Unlimited[] = "9223372036854771712\n";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// --- cgroup limits -----------------------------------------------------------------------------

TEST_CASE("cgroup v2: a limit set at an ancestor applies", "[cgroup]") {
  FakeSystem sys;
  sys.SelfCgroup("0::/system.slice/kiln.service/worker\n");
  const std::string limit_file = sys.Cgroup("system.slice/memory.max", "4294967296\n");
  sys.Cgroup("system.slice/kiln.service/memory.max", "max\n");
  sys.Cgroup("system.slice/kiln.service/worker/memory.max", "max\n");
  const std::optional<CgroupLimit> limit = TightestCgroupMemoryLimit(sys.roots());
  REQUIRE(limit.has_value());
  CHECK(limit->bytes == 4294967296);
  CHECK(limit->file == limit_file);
}

TEST_CASE("cgroup v2: max everywhere is no limit", "[cgroup]") {
  FakeSystem sys;
  sys.SelfCgroup("0::/a/b\n");
  sys.Cgroup("a/memory.max", "max\n");
  sys.Cgroup("a/b/memory.max", "max\n");
  sys.Cgroup("cgroup.controllers", "cpu memory\n");  // the root: no memory.max
  CHECK_FALSE(TightestCgroupMemoryLimit(sys.roots()).has_value());
}

TEST_CASE("cgroup v2: the tightest of nested limits wins, wherever it is", "[cgroup]") {
  FakeSystem sys;
  sys.SelfCgroup("0::/a/b/c\n");
  SECTION("tighter below") {
    sys.Cgroup("a/memory.max", "4000000\n");
    sys.Cgroup("a/b/memory.max", "3000000\n");
    const std::string tightest = sys.Cgroup("a/b/c/memory.max", "2000000\n");
    const std::optional<CgroupLimit> limit = TightestCgroupMemoryLimit(sys.roots());
    REQUIRE(limit.has_value());
    CHECK(limit->bytes == 2000000);
    CHECK(limit->file == tightest);
  }
  SECTION("tighter above") {
    const std::string tightest = sys.Cgroup("a/memory.max", "1000000\n");
    sys.Cgroup("a/b/memory.max", "max\n");
    sys.Cgroup("a/b/c/memory.max", "5000000\n");
    const std::optional<CgroupLimit> limit = TightestCgroupMemoryLimit(sys.roots());
    REQUIRE(limit.has_value());
    CHECK(limit->bytes == 1000000);
    CHECK(limit->file == tightest);
  }
}

TEST_CASE("cgroup v2: a container's own cgroup mounted as the root", "[cgroup]") {
  // /proc/self/cgroup names the host's path, which does not exist under the container's mount:
  // the limit is found at the mount's root.
  FakeSystem sys;
  sys.SelfCgroup("0::/docker/0123abcd\n");
  const std::string root_limit = sys.Cgroup("memory.max", "536870912\n");
  const std::optional<CgroupLimit> limit = TightestCgroupMemoryLimit(sys.roots());
  REQUIRE(limit.has_value());
  CHECK(limit->bytes == 536870912);
  CHECK(limit->file == root_limit);
}

TEST_CASE("cgroup v2: a path outside the namespace reads only the root", "[cgroup]") {
  FakeSystem sys;
  sys.SelfCgroup("0::/../../elsewhere\n");
  sys.Cgroup("elsewhere/memory.max", "1000\n");  // must not be read: not our cgroup
  CHECK_FALSE(TightestCgroupMemoryLimit(sys.roots()).has_value());
  sys.Cgroup("memory.max", "7000\n");
  const std::optional<CgroupLimit> limit = TightestCgroupMemoryLimit(sys.roots());
  REQUIRE(limit.has_value());
  CHECK(limit->bytes == 7000);
}

TEST_CASE("cgroup: malformed limits are ignored", "[cgroup]") {
  FakeSystem sys;
  sys.SelfCgroup("0::/a\n");
  sys.Cgroup("a/memory.max", "lots\n");
  CHECK_FALSE(TightestCgroupMemoryLimit(sys.roots()).has_value());
  sys.Cgroup("memory.max", "99999999999999999999999\n");  // out of int64 range
  CHECK_FALSE(TightestCgroupMemoryLimit(sys.roots()).has_value());
  sys.Cgroup("memory.max", "12345\n");
  REQUIRE(TightestCgroupMemoryLimit(sys.roots()).has_value());
  CHECK(TightestCgroupMemoryLimit(sys.roots())->bytes == 12345);
}

TEST_CASE("cgroup v1: the memory controller's limit, huge values meaning none", "[cgroup]") {
  FakeSystem sys;
  sys.SelfCgroup("9:name=systemd:/\n5:cpu,cpuacct:/x\n4:memory:/x/y\n1:pids:/x\n0::/\n");
  sys.Cgroup("memory/memory.limit_in_bytes", kV1Unlimited);
  sys.Cgroup("memory/x/y/memory.limit_in_bytes", kV1Unlimited);
  SECTION("no limit anywhere") { CHECK_FALSE(TightestCgroupMemoryLimit(sys.roots()).has_value()); }
  SECTION("a limit at the parent") {
    const std::string limit_file = sys.Cgroup("memory/x/memory.limit_in_bytes", "2147483648\n");
    sys.Cgroup("cpu,cpuacct/x/memory.limit_in_bytes", "1\n");  // not the memory hierarchy
    const std::optional<CgroupLimit> limit = TightestCgroupMemoryLimit(sys.roots());
    REQUIRE(limit.has_value());
    CHECK(limit->bytes == 2147483648);
    CHECK(limit->file == limit_file);
  }
}

TEST_CASE("cgroup v1: memory mounted jointly with another controller", "[cgroup]") {
  FakeSystem sys;
  sys.SelfCgroup("3:cpu,memory:/z\n");
  const std::string limit_file = sys.Cgroup("cpu,memory/z/memory.limit_in_bytes", "1048576\n");
  const std::optional<CgroupLimit> limit = TightestCgroupMemoryLimit(sys.roots());
  REQUIRE(limit.has_value());
  CHECK(limit->bytes == 1048576);
  CHECK(limit->file == limit_file);
}

TEST_CASE("cgroup hybrid: the tightest of v1 and v2 (unified)", "[cgroup]") {
  FakeSystem sys;
  sys.SelfCgroup("4:memory:/svc\n0::/svc\n");
  sys.Cgroup("memory/svc/memory.limit_in_bytes", "8000000\n");
  const std::string v2_file = sys.Cgroup("unified/svc/memory.max", "6000000\n");
  const std::optional<CgroupLimit> limit = TightestCgroupMemoryLimit(sys.roots());
  REQUIRE(limit.has_value());
  CHECK(limit->bytes == 6000000);
  CHECK(limit->file == v2_file);
}

TEST_CASE("cgroup: no /proc/self/cgroup is no limit", "[cgroup]") {
  FakeSystem sys;
  sys.Cgroup("memory.max", "1000\n");
  CHECK_FALSE(TightestCgroupMemoryLimit(sys.roots()).has_value());
}

TEST_CASE("the memory limit: the cgroup's when tighter, else physical memory", "[limit]") {
  const std::optional<CgroupLimit> cgroup = CgroupLimit{2'000'000'000, "/cg/memory.max"};

  const MemoryLimit from_cgroup = ChooseMemoryLimit(cgroup, 8'000'000'000);
  CHECK(from_cgroup.bytes == 2'000'000'000);
  CHECK(from_cgroup.source == MemoryLimit::Source::kCgroup);
  CHECK(from_cgroup.Describe() == "2000.0 MB from cgroup /cg/memory.max");

  const MemoryLimit from_physical = ChooseMemoryLimit(cgroup, 1'000'000'000);
  CHECK(from_physical.bytes == 1'000'000'000);
  CHECK(from_physical.source == MemoryLimit::Source::kPhysicalMemory);
  CHECK(from_physical.Describe() == "1000.0 MB from physical memory");

  const MemoryLimit no_cgroup = ChooseMemoryLimit(std::nullopt, 3'000'000'000);
  CHECK(no_cgroup.bytes == 3'000'000'000);
  CHECK(no_cgroup.source == MemoryLimit::Source::kPhysicalMemory);

  const MemoryLimit physical_unknown = ChooseMemoryLimit(cgroup, 0);
  CHECK(physical_unknown.bytes == 2'000'000'000);
  CHECK(physical_unknown.source == MemoryLimit::Source::kCgroup);
}

TEST_CASE("the memory limit of this process on this machine", "[limit][proc]") {
  const absl::StatusOr<int64_t> physical = PhysicalMemoryBytes();
  REQUIRE(physical.ok());
  CHECK(*physical > 64 * kMiB);
  const absl::StatusOr<MemoryLimit> limit = ProcessMemoryLimit();
  REQUIRE(limit.ok());
  INFO(limit->Describe());
  CHECK(limit->bytes > 0);
  CHECK(limit->bytes <= *physical);
  if (limit->source == MemoryLimit::Source::kCgroup) {
    CHECK(limit->bytes == TightestCgroupMemoryLimit()->bytes);
  } else {
    CHECK(limit->bytes == *physical);
  }
}

// --- resident memory ---------------------------------------------------------------------------

TEST_CASE("resident memory is parsed from a status file", "[proc]") {
  FakeSystem sys;
  sys.Proc("123/status",
           "Name:\tkiln-worker\nVmPeak:\t  900000 kB\nVmHWM:\t  300000 kB\nVmRSS:\t  200000 kB\n"
           "RssAnon:\t  150000 kB\n");
  sys.Proc("456/status", "Name:\tkiln-worker\nState:\tZ (zombie)\n");  // no memory lines
  const absl::StatusOr<ResidentMemory> memory = ReadResidentMemoryOf(123, sys.roots());
  REQUIRE(memory.ok());
  CHECK(memory->resident_bytes == 200000 * 1024);
  CHECK(memory->peak_resident_bytes == 300000 * 1024);
  CHECK(ReadResidentMemoryOf(456, sys.roots()).status().code() == absl::StatusCode::kNotFound);
  CHECK(ReadResidentMemoryOf(789, sys.roots()).status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("PSS, private and shared memory are parsed from smaps_rollup", "[proc]") {
  FakeSystem sys;
  sys.Proc("123/smaps_rollup",
           "55d0c0000000-7ffd00000000 ---p 00000000 00:00 0  [rollup]\n"
           "Rss:              300000 kB\nPss:              208754 kB\nPss_Anon:  81920 kB\n"
           "Shared_Clean:      90000 kB\nShared_Dirty:        500 kB\n"
           "Private_Clean:      1000 kB\nPrivate_Dirty:     80000 kB\n");
  sys.Proc("456/smaps_rollup", "");  // a zombie's
  const absl::StatusOr<ProportionalMemory> memory = ReadProportionalMemory(123, sys.roots());
  REQUIRE(memory.ok());
  CHECK(memory->pss_bytes == 208754 * 1024);
  CHECK(memory->private_bytes == 81000 * 1024);
  CHECK(memory->shared_bytes == 90500 * 1024);
  CHECK(ReadProportionalMemory(456, sys.roots()).status().code() == absl::StatusCode::kNotFound);
  CHECK(ReadProportionalMemory(789, sys.roots()).status().code() == absl::StatusCode::kNotFound);
  // The zombie and the vanished process count 0.
  CHECK(SumPssBytes({123, 456, 789}, sys.roots()) == 208754 * 1024);
  const std::string sample =
      "55d4c0a00000-7ffd3b9f5000 ---p 00000000 00:00 0                          [rollup]\n"
      "Rss:              412376 kB\n"
      "Pss:              208754 kB\n"
      "Pss_Anon:          81920 kB\n"
      "Pss_File:         126834 kB\n"
      "Pss_Shmem:             0 kB\n"
      "Shared_Clean:     300000 kB\n";
  REQUIRE(ParseSmapsRollup(sample).has_value());
  CHECK(ParseSmapsRollup(sample)->pss_bytes == 208754 * 1024);
  CHECK(ParseSmapsRollup(sample)->private_bytes == 0);
  CHECK(ParseSmapsRollup(sample)->shared_bytes == 300000 * 1024);
  REQUIRE(ParseSmapsRollup("Pss:  17 kB").has_value());
  CHECK(ParseSmapsRollup("Pss:  17 kB")->pss_bytes == 17 * 1024);
  CHECK_FALSE(ParseSmapsRollup("").has_value());
  CHECK_FALSE(ParseSmapsRollup("Rss: 10 kB\nPss_Anon: 5 kB\n").has_value());
  CHECK_FALSE(ParseSmapsRollup("Pss: lots kB\n").has_value());
  CHECK_FALSE(ParseSmapsRollup("Pss: 12 MB\n").has_value());
  CHECK_FALSE(ParseSmapsRollup("Pss: -3 kB\n").has_value());
}

TEST_CASE("ChargedMemory is a cgroup's working set, v2 and v1, or the tree's PSS", "[cgroup]") {
  FakeSystem sys;
  MemoryLimit v2{900'000'000, MemoryLimit::Source::kCgroup,
                 sys.Cgroup("unified/kiln/memory.max", "900000000\n")};
  sys.Cgroup("unified/kiln/memory.current", "500000000\n");
  sys.Cgroup("unified/kiln/memory.stat",
             "anon 300000000\nfile 200000000\ninactive_file 150000000\n");
  absl::StatusOr<MemoryUsage> usage = ChargedMemory(v2, getpid(), sys.roots());
  REQUIRE(usage.ok());
  CHECK(usage->bytes == 350'000'000);
  CHECK_THAT(usage->source, Contains("unified/kiln/memory.current - inactive_file"));

  MemoryLimit v1{900'000'000, MemoryLimit::Source::kCgroup,
                 sys.Cgroup("memory/kiln/memory.limit_in_bytes", "900000000\n")};
  sys.Cgroup("memory/kiln/memory.usage_in_bytes", "600000000\n");
  // v1 lists this cgroup's own counters and then the hierarchy's (total_): the latter count.
  sys.Cgroup("memory/kiln/memory.stat", "inactive_file 1\ntotal_inactive_file 100000000\n");
  usage = ChargedMemory(v1, getpid(), sys.roots());
  REQUIRE(usage.ok());
  CHECK(usage->bytes == 500'000'000);

  MemoryLimit gone{900'000'000, MemoryLimit::Source::kCgroup,
                   sys.roots().cgroup + "/memory/none/memory.limit_in_bytes"};
  CHECK_FALSE(ChargedMemory(gone, getpid(), sys.roots()).ok());

  MemoryLimit physical{25'000'000'000, MemoryLimit::Source::kPhysicalMemory, "physical memory"};
  usage = ChargedMemory(physical, getpid());
  REQUIRE(usage.ok());
  CHECK(usage->bytes > 0);
  CHECK_THAT(usage->source, Contains("PSS"));
}

TEST_CASE("ResetPeakResident writes 5 to clear_refs", "[proc]") {
  FakeSystem sys;
  const absl::Status missing = ResetPeakResident(sys.roots());
  CHECK(missing.code() == absl::StatusCode::kNotFound);  // ENOENT
  CHECK_THAT(std::string(missing.message()), Contains("No such file or directory"));
  const std::string clear_refs = sys.Proc("self/clear_refs", "");
  REQUIRE(ResetPeakResident(sys.roots()).ok());
  CHECK(ReadFile(clear_refs) == "5");
}

TEST_CASE("this process's resident memory", "[proc]") {
  const absl::StatusOr<ResidentMemory> self = ReadResidentMemory();
  REQUIRE(self.ok());
  CHECK(self->resident_bytes > 0);
  CHECK(self->peak_resident_bytes >= self->resident_bytes);
  const absl::StatusOr<ResidentMemory> by_pid = ReadResidentMemoryOf(getpid());
  REQUIRE(by_pid.ok());
  CHECK(by_pid->resident_bytes > 0);
  const absl::StatusOr<ProportionalMemory> proportional = ReadProportionalMemory();
  REQUIRE(proportional.ok());
  CHECK(proportional->pss_bytes > 0);
  CHECK(proportional->pss_bytes <= self->resident_bytes + 16 * kMiB);
  CHECK(proportional->private_bytes > 0);
  CHECK(SumPssBytes({getpid(), getpid()}) >= 2 * proportional->pss_bytes - 16 * kMiB);
}

TEST_CASE("ResetPeakResident lowers VmHWM after memory is returned", "[proc]") {
  constexpr size_t kSize = 64 * kMiB;
  constexpr int64_t kRssSlack = 4 * kMiB;
  const absl::StatusOr<ResidentMemory> before = ReadResidentMemory();
  REQUIRE(before.ok());

  void* block = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(block != MAP_FAILED);
  volatile char* bytes = static_cast<volatile char*>(block);
  for (size_t i = 0; i < kSize; i += 4096) bytes[i] = 1;  // touch every page
  const absl::StatusOr<ResidentMemory> touched = ReadResidentMemory();
  REQUIRE(touched.ok());
  CHECK(touched->resident_bytes >= before->resident_bytes + 60 * kMiB);
  CHECK(touched->peak_resident_bytes >= touched->resident_bytes - kRssSlack);

  REQUIRE(munmap(block, kSize) == 0);
  const absl::StatusOr<ResidentMemory> freed = ReadResidentMemory();
  REQUIRE(freed.ok());
  CHECK(freed->resident_bytes <= touched->resident_bytes - 60 * kMiB);
  // The peak remembers. Since Linux 6.2 the RSS counters are per-CPU and /proc reads an
  // approximate sum (off by up to 32+ pages per CPU), so VmHWM can read slightly below an
  // earlier VmRSS: seen 31 pages below here.
  CHECK(freed->peak_resident_bytes >= touched->resident_bytes - kRssSlack);

  const absl::Status reset = ResetPeakResident();
  REQUIRE(reset.ok());
  const absl::StatusOr<ResidentMemory> after = ReadResidentMemory();
  REQUIRE(after.ok());
  INFO("peak before reset " << freed->peak_resident_bytes << ", after "
                            << after->peak_resident_bytes);
  CHECK(after->peak_resident_bytes <= touched->resident_bytes - 60 * kMiB);
  CHECK(after->peak_resident_bytes >= after->resident_bytes);
}

// --- the worker's budget -----------------------------------------------------------------------

MemoryConfig Memory(int64_t limit_bytes, double share, int64_t headroom_bytes) {
  MemoryConfig config;
  config.set_limit_bytes(limit_bytes);
  config.set_cgroup_share(share);
  config.set_headroom_bytes(headroom_bytes);
  return config;
}

TEST_CASE("WorkerBudgetBytes", "[budget]") {
  // An explicit per-worker limit ignores the machine's limit and the worker count.
  CHECK(WorkerBudgetBytes(Memory(2'000'000'000, 0.5, 0), 100'000'000'000, 7) == 2'000'000'000);
  CHECK(WorkerBudgetBytes(Memory(2'000'000'000, 0, 500'000'000), 1, 1) == 1'500'000'000);
  // Derived: share x limit / workers, the default share 0.8.
  CHECK(WorkerBudgetBytes(Memory(0, 0, 0), 10'000'000'000, 4) == 2'000'000'000);
  CHECK(WorkerBudgetBytes(Memory(0, 0.5, 1'000'000'000), 8'000'000'000, 2) == 1'000'000'000);
  CHECK(WorkerBudgetBytes(Memory(0, 1.0, 0), 1000, 3) == 333);  // rounded down
  // Never below 0.
  CHECK(WorkerBudgetBytes(Memory(0, 0.8, 9'000'000'000), 10'000'000'000, 1) == 0);
  CHECK(WorkerBudgetBytes(Memory(1000, 0, 2000), 10'000'000'000, 1) == 0);
  CHECK(WorkerBudgetBytes(Memory(0, 0.8, 0), -5, 1) == 0);
  // No workers counts as one.
  CHECK(WorkerBudgetBytes(Memory(0, 0.5, 0), 1000, 0) == 500);
}

TEST_CASE("ShapeUnits", "[budget]") {
  CHECK(ShapeUnits(4, 0) == 4);
  CHECK(ShapeUnits(0, 128) == 128);
  CHECK(ShapeUnits(2, 64) == 128);
  CHECK(ShapeUnits(0, 0) == 1);
}

// --- the shape memory model --------------------------------------------------------------------

// Checks Projected never decreases over 0..max_units and MaxUnitsWithin agrees with Projected
// for every budget from below the baseline to above the largest projection.
void CheckConsistent(const ShapeMemoryModel& model, int64_t max_units) {
  for (int64_t units = 0; units < max_units; ++units) {
    INFO("units " << units);
    REQUIRE(model.Projected(units + 1) >= model.Projected(units));
  }
  const int64_t low = model.baseline_bytes() - 10;
  const int64_t high = model.Projected(max_units);
  for (int64_t budget = low; budget <= high; ++budget) {
    INFO("budget " << budget);
    const int64_t units = model.MaxUnitsWithin(budget);
    REQUIRE(units >= 0);
    if (units > 0) REQUIRE(model.Projected(units) <= budget);
    if (units < ShapeMemoryModel::kUnbounded) REQUIRE(model.Projected(units + 1) > budget);
  }
}

TEST_CASE("ShapeMemoryModel without measurements projects the baseline", "[model]") {
  const ShapeMemoryModel model(1000);
  CHECK(model.Projected(0) == 1000);
  CHECK(model.Projected(1) == 1000);
  CHECK(model.Projected(1 << 20) == 1000);
  CHECK(model.Slope() == 0);
  CHECK(model.MaxUnitsWithin(1000) == ShapeMemoryModel::kUnbounded);
  CHECK(model.MaxUnitsWithin(999) == 0);
}

TEST_CASE("ShapeMemoryModel with one measurement extrapolates from the baseline", "[model]") {
  ShapeMemoryModel model(100);
  model.Add(10, 200);
  CHECK(model.Slope() == Approx(10));
  CHECK(model.Projected(0) == 100);
  CHECK(model.Projected(1) == 200);  // costed as the measured size above it
  CHECK(model.Projected(10) == 200);
  CHECK(model.Projected(11) == 210);
  CHECK(model.Projected(20) == 300);
  CHECK(model.MaxUnitsWithin(300) == 20);
  CHECK(model.MaxUnitsWithin(309) == 20);
  CHECK(model.MaxUnitsWithin(310) == 21);
  CHECK(model.MaxUnitsWithin(199) == 0);
  CHECK(model.MaxUnitsWithin(200) == 10);
  CheckConsistent(model, 60);
}

TEST_CASE("ShapeMemoryModel extrapolates with the steepest slope", "[model]") {
  ShapeMemoryModel model(1000);
  model.Add(8, 1500);  // in any order
  model.Add(1, 1100);
  model.Add(4, 1350);
  model.Add(2, 1150);
  // Slopes 50, 100, 37.5: the steepest, not the last.
  CHECK(model.Slope() == Approx(100));
  CHECK(model.Projected(1) == 1100);
  CHECK(model.Projected(2) == 1150);
  CHECK(model.Projected(3) == 1350);  // between 2 and 4: costed as 4
  CHECK(model.Projected(8) == 1500);
  CHECK(model.Projected(16) == 2300);
  CHECK(model.MaxUnitsWithin(1349) == 2);
  CHECK(model.MaxUnitsWithin(1350) == 4);
  CHECK(model.MaxUnitsWithin(2300) == 16);
  CheckConsistent(model, 40);
}

TEST_CASE("ShapeMemoryModel stays monotone when a larger shape measured less", "[model]") {
  ShapeMemoryModel model(1000);
  model.Add(1, 1100);
  model.Add(2, 1050);  // the allocator returned memory in between
  model.Add(4, 1200);
  CHECK(model.Projected(2) == 1100);  // not 1050
  CHECK(model.Slope() == Approx(75));
  CHECK(model.Projected(6) == 1350);
  CHECK(model.MaxUnitsWithin(1100) == 2);
  CheckConsistent(model, 40);

  ShapeMemoryModel shrinking(1000);
  shrinking.Add(1, 2000);
  shrinking.Add(2, 1500);
  CHECK(shrinking.Slope() == 0);  // never negative
  CHECK(shrinking.Projected(100) == 2000);
  CHECK(shrinking.MaxUnitsWithin(2000) == ShapeMemoryModel::kUnbounded);
  CHECK(shrinking.MaxUnitsWithin(1999) == 0);
  CheckConsistent(shrinking, 20);
}

TEST_CASE("ShapeMemoryModel never projects below the baseline", "[model]") {
  ShapeMemoryModel model(1000);
  model.Add(4, 900);
  CHECK(model.Slope() == 0);
  CHECK(model.Projected(2) == 1000);
  CHECK(model.Projected(40) == 1000);
  CheckConsistent(model, 20);
}

TEST_CASE("ShapeMemoryModel keeps the larger of repeated peaks and ignores empty sizes",
          "[model]") {
  ShapeMemoryModel model(100);
  model.Add(4, 300);
  model.Add(4, 200);
  model.Add(0, 1'000'000);
  model.Add(-3, 1'000'000);
  REQUIRE(model.peaks().size() == 1);
  CHECK(model.peaks().at(4) == 300);
  CHECK(model.Projected(4) == 300);
}

TEST_CASE("ShapeMemoryModel is conservative on linear and concave growth", "[model]") {
  // Truth: baseline + fixed cost of the first pass + per-unit activations.
  const int64_t baseline = 400'000'000;
  const auto linear = [&](int64_t units) { return baseline + 50'000'000 + 3'000'000 * units; };
  const auto concave = [&](int64_t units) {
    return baseline + static_cast<int64_t>(20'000'000 * std::sqrt(static_cast<double>(units)));
  };
  SECTION("one measurement") {
    ShapeMemoryModel model(baseline);
    model.Add(4, linear(4));
    for (int64_t units = 1; units <= 4096; ++units)
      REQUIRE(model.Projected(units) >= linear(units));
  }
  SECTION("several measurements") {
    ShapeMemoryModel a(baseline);
    ShapeMemoryModel b(baseline);
    for (int64_t units : {1, 2, 4, 8, 16}) {
      a.Add(units, linear(units));
      b.Add(units, concave(units));
    }
    for (int64_t units = 1; units <= 4096; ++units) {
      INFO("units " << units);
      REQUIRE(a.Projected(units) >= linear(units));
      REQUIRE(b.Projected(units) >= concave(units));
    }
  }
}

TEST_CASE("ShapeMemoryModel saturates instead of overflowing", "[model]") {
  ShapeMemoryModel model(1'000'000'000);
  model.Add(1, 2'000'000'000);
  model.Add(2, 4'000'000'000);
  const int64_t max = std::numeric_limits<int64_t>::max();
  CHECK(model.Projected(max) == max);
  // floor((INT64_MAX - 4e9) / 2e9) units above the largest measured size, 2.
  CHECK(model.MaxUnitsWithin(max) == 4'611'686'018);
  CHECK(model.MaxUnitsWithin(6'000'000'000) == 3);
}

// --- room for another worker -------------------------------------------------------------------

TEST_CASE("CheckRoomForWorkers adds usage, warming workers, new workers and headroom", "[budget]") {
  WorkerAdmission admission;
  admission.usage_bytes = 200'000'000;
  admission.usage_source = "the cgroup's working set";
  admission.pending_bytes = 100'000'000;
  admission.pending_workers = 1;
  admission.count = 2;
  admission.per_worker_bytes = 50'000'000;
  admission.measured = true;
  admission.headroom_bytes = 100'000'000;
  CHECK(CheckRoomForWorkers(admission, 500'000'000).ok());  // exactly
  const absl::Status full = CheckRoomForWorkers(admission, 499'999'999);
  REQUIRE(full.code() == absl::StatusCode::kResourceExhausted);
  const std::string message(full.message());
  CHECK_THAT(message, Contains("200.0 MB in use (the cgroup's working set)") &&
                          Contains("100.0 MB reserved for 1 worker(s) still warming") &&
                          Contains("2 x 50.0 MB (the private peak a warm worker") &&
                          Contains("100.0 MB headroom = 500.0 MB, over the 500.0 MB limit"));
  admission.measured = false;
  CHECK_THAT(std::string(CheckRoomForWorkers(admission, 1).message()),
             Contains("its memory budget: no worker of the model measured yet"));
}

}  // namespace
}  // namespace kiln
