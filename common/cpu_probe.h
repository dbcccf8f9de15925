// How many CPUs this process really has: the CPUs it may run on (its affinity mask, which a
// cpuset cgroup or `taskset` narrows) and the CPU time a CFS quota lets it use (cgroup v1
// cpu.cfs_quota_us / cpu.cfs_period_us, v2 cpu.max), which is what a Kubernetes CPU limit sets.
// std::thread::hardware_concurrency() sees neither a quota nor, on older libstdc++, a cpuset.
//
// Ownership: nothing here holds state. Thread-safety: every function may be called from any
// thread; each reads the files it names and returns values.
#ifndef KILN_COMMON_CPU_PROBE_H_
#define KILN_COMMON_CPU_PROBE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/cgroup_files.h"

namespace kiln {

// A CFS bandwidth limit and the file it was read from.
struct CgroupCpuQuota {
  int64_t quota_us = 0;   // CPU time allowed per period, over all the cgroup's threads
  int64_t period_us = 0;  // > 0
  std::string file;       // ".../cpu.max" or ".../cpu.cfs_quota_us"
  double cpus() const { return static_cast<double>(quota_us) / static_cast<double>(period_us); }
};

// The tightest CFS quota (the smallest quota / period) over this process's cgroup and all its
// ancestors, in cgroup v2 (cpu.max: "<quota> <period>", "max <period>" = none) and v1
// (cpu.cfs_quota_us, -1 = none, with cpu.cfs_period_us beside it). Malformed values count as no
// quota (logged). std::nullopt when there is none.
std::optional<CgroupCpuQuota> TightestCgroupCpuQuota(const SystemRoots& roots = {});

// The CPUs in this process's affinity mask (sched_getaffinity; it grows the mask for machines
// with more than 1024 CPUs). An error only when the kernel refuses.
absl::StatusOr<int> AffinityCpuCount();

// The CPUs the server sizes its threads to.
struct CpuLimit {
  int cpus = 1;                         // min(affinity, quota rounded down), at least 1
  int affinity_cpus = 0;                // 0 when unknown
  std::optional<CgroupCpuQuota> quota;  // none: no CFS quota anywhere
  // "2 CPUs (affinity 2 CPUs, no CFS quota)" or "1 CPU (CFS quota 1.50 CPUs from
  // /sys/fs/cgroup/cpu/x/cpu.cfs_quota_us, rounded down; affinity 2 CPUs)".
  std::string Describe() const;
};

// min(affinity_cpus, floor(quota)), at least 1; an affinity of 0 (unknown) counts as no bound.
CpuLimit ChooseCpuLimit(int affinity_cpus, const std::optional<CgroupCpuQuota>& quota);

// ChooseCpuLimit(AffinityCpuCount(), TightestCgroupCpuQuota(roots)); without an affinity mask,
// std::thread::hardware_concurrency() stands in for it.
CpuLimit ProcessCpuLimit(const SystemRoots& roots = {});

}  // namespace kiln

#endif  // KILN_COMMON_CPU_PROBE_H_
