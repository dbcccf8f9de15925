// What the memory budget is measured against and with: the memory limit this process lives under
// (the tightest cgroup limit, else physical memory), and the resident bytes of this or another
// process from /proc/<pid>/status (VmRSS now, VmHWM the peak since start or the last reset).
//
// Ownership: nothing here holds state; every function reads the files it names and returns values.
// Thread-safety: every function may be called from any thread. ResetPeakResident affects the whole
// process: two threads measuring peaks at once see each other's resets and allocations.
#ifndef KILN_COMMON_MEMORY_PROBE_H_
#define KILN_COMMON_MEMORY_PROBE_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/cgroup_files.h"

namespace kiln {

// Limits from 2^60 bytes (1 EiB) up mean "no limit": cgroup v1 reports an unset limit as
// LONG_MAX rounded down to a page (9223372036854771712).
inline constexpr int64_t kUnlimitedMemoryBytes = int64_t{1} << 60;

// A cgroup memory limit and the file it was read from.
struct CgroupLimit {
  int64_t bytes = 0;
  std::string file;  // e.g. "/sys/fs/cgroup/system.slice/kiln.service/memory.max"
};

// The tightest cgroup memory limit over this process's cgroup and all its ancestors up to the
// hierarchy's root, in both cgroup v2 (the "0::<path>" line of <proc>/self/cgroup; memory.max,
// "max" = none) and v1 (the line whose controllers include "memory"; memory.limit_in_bytes).
// Directories that do not exist are skipped, so a container whose cgroup mount is its own
// cgroup (the path in /proc names a directory only the host sees) still finds its limit at the
// mount's root. Unreadable or malformed values count as no limit (logged). std::nullopt when
// there is no limit, or no <proc>/self/cgroup. memory.high (throttling, not a kill) is ignored.
std::optional<CgroupLimit> TightestCgroupMemoryLimit(const SystemRoots& roots = {});

// Physical memory: sysconf(_SC_PHYS_PAGES) x sysconf(_SC_PAGESIZE).
absl::StatusOr<int64_t> PhysicalMemoryBytes();

// The memory this process may use and where that number came from.
struct MemoryLimit {
  enum class Source { kCgroup, kPhysicalMemory };
  int64_t bytes = 0;
  Source source = Source::kPhysicalMemory;
  std::string origin;  // kCgroup: the limit file's path; kPhysicalMemory: "physical memory"
  // "2147.5 MB from cgroup /sys/fs/cgroup/x/memory.max" or "25277.0 MB from physical memory".
  std::string Describe() const;
};

// The cgroup limit when there is one no larger than physical memory, else physical memory
// (`physical_bytes` <= 0: unknown, so the cgroup limit when there is one, else 0 bytes).
MemoryLimit ChooseMemoryLimit(const std::optional<CgroupLimit>& cgroup, int64_t physical_bytes);

// ChooseMemoryLimit(TightestCgroupMemoryLimit(roots), PhysicalMemoryBytes()); an error only
// when there is no cgroup limit and physical memory cannot be read.
absl::StatusOr<MemoryLimit> ProcessMemoryLimit(const SystemRoots& roots = {});

// Resident bytes from /proc/<pid>/status.
struct ResidentMemory {
  int64_t resident_bytes = 0;       // VmRSS
  int64_t peak_resident_bytes = 0;  // VmHWM: the peak since start or the last ResetPeakResident
  int64_t anon_bytes = 0;           // RssAnon: heap and other anonymous pages (not the weights'
                                    // file pages, which are shared and reclaimable)

  // What VmRSS peaked above VmRSS now: memory freed since the peak, which was anonymous (file
  // pages stay mapped) and the process's own.
  int64_t FreedSincePeakBytes() const {
    return peak_resident_bytes > resident_bytes ? peak_resident_bytes - resident_bytes : 0;
  }
  // The peak of the anonymous memory since VmHWM was reset, estimated: RssAnon now plus what was
  // freed since the peak. This is what the memory budget measures a worker by.
  int64_t PeakAnonBytes() const { return anon_bytes + FreedSincePeakBytes(); }
};

// This process's resident memory (<proc>/self/status).
absl::StatusOr<ResidentMemory> ReadResidentMemory(const SystemRoots& roots = {});

// Process `pid`'s resident memory (<proc>/<pid>/status). NotFound when the process does not exist
// or has no memory of its own (a zombie, a kernel thread: no VmRSS line).
absl::StatusOr<ResidentMemory> ReadResidentMemoryOf(pid_t pid, const SystemRoots& roots = {});

// Resets this process's VmHWM to its current VmRSS by writing "5" to <proc>/self/clear_refs
// (Linux >= 4.0). Fails when the write fails, e.g. EACCES after prctl(PR_SET_DUMPABLE, 0) made
// /proc/self root's. getrusage's ru_maxrss may not follow the reset: read VmHWM instead.
absl::Status ResetPeakResident(const SystemRoots& roots = {});

// What a process's memory costs the machine (<proc>/<pid>/smaps_rollup): PSS (each shared page
// divided among the processes that map it, so PSS sums over a tree without counting shared
// weights twice) and its private pages (Private_Clean + Private_Dirty: what it alone holds,
// e.g. the pages a forked worker copied on write).
struct ProportionalMemory {
  int64_t pss_bytes = 0;
  int64_t private_bytes = 0;
  int64_t shared_bytes = 0;  // Shared_Clean + Shared_Dirty: resident pages other processes map too
};

// Parses smaps_rollup text; std::nullopt without a well-formed "Pss:" line (a zombie's file is
// empty). Missing Private_ and Shared_ lines count 0.
std::optional<ProportionalMemory> ParseSmapsRollup(absl::string_view text);

// Process `pid`'s (0 = this process's) PSS and private bytes. NotFound when the process is gone
// or has no memory of its own.
absl::StatusOr<ProportionalMemory> ReadProportionalMemory(pid_t pid = 0,
                                                          const SystemRoots& roots = {});

// What the kernel charges now against `limit`, and how that was read.
struct MemoryUsage {
  int64_t bytes = 0;
  std::string source;
};

// For a cgroup limit: the usage of the cgroup that has it (v2 memory.current, v1
// memory.usage_in_bytes, beside the limit file) less its inactive file pages (memory.stat:
// inactive_file, v1 total_inactive_file), which the kernel reclaims before it kills: the working
// set, as the kubelet counts it. For physical memory: the summed PSS of the process tree under
// `root`. An error when the files cannot be read.
absl::StatusOr<MemoryUsage> ChargedMemory(const MemoryLimit& limit, pid_t root,
                                          const SystemRoots& roots = {});

// The summed PSS of `pids`; a process that has gone counts 0 (the list is a snapshot).
int64_t SumPssBytes(const std::vector<pid_t>& pids, const SystemRoots& roots = {});

}  // namespace kiln

#endif  // KILN_COMMON_MEMORY_PROBE_H_
