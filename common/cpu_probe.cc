#include "common/cpu_probe.h"

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status_util.h"
#include "common/text_proto_file.h"
#include "glog/logging.h"

namespace kiln {
namespace {

// A quota or period in microseconds; std::nullopt (logged) when not a positive number.
std::optional<int64_t> ParseMicroseconds(const std::string& file, absl::string_view text) {
  int64_t us = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &us) || us <= 0) {
    LOG(WARNING) << "ignoring CPU quota file " << file << ": \""
                 << absl::CHexEscape(absl::StripAsciiWhitespace(text))
                 << "\" is not a positive count of microseconds";
    return std::nullopt;
  }
  return us;
}

// cgroup v2 cpu.max: "<quota> <period>" or "max <period>".
std::optional<CgroupCpuQuota> ReadV2(const std::string& dir) {
  const std::string file = absl::StrCat(dir, "/cpu.max");
  const absl::StatusOr<std::string> text = ReadWholeFile(file);
  if (!text.ok()) return std::nullopt;
  const std::vector<absl::string_view> fields =
      absl::StrSplit(absl::StripAsciiWhitespace(*text), ' ', absl::SkipEmpty());
  if (fields.empty() || fields[0] == "max") return std::nullopt;
  const std::optional<int64_t> quota = ParseMicroseconds(file, fields[0]);
  // The period is optional when written; the kernel's default is 100 ms.
  const std::optional<int64_t> period =
      fields.size() > 1 ? ParseMicroseconds(file, fields[1]) : std::optional<int64_t>(100000);
  if (!quota.has_value() || !period.has_value()) return std::nullopt;
  return CgroupCpuQuota{*quota, *period, file};
}

// cgroup v1: cpu.cfs_quota_us (-1 = none) and cpu.cfs_period_us.
std::optional<CgroupCpuQuota> ReadV1(const std::string& dir) {
  const std::string file = absl::StrCat(dir, "/cpu.cfs_quota_us");
  const absl::StatusOr<std::string> quota_text = ReadWholeFile(file);
  if (!quota_text.ok()) return std::nullopt;
  if (absl::StripAsciiWhitespace(*quota_text) == "-1") return std::nullopt;
  const std::string period_file = absl::StrCat(dir, "/cpu.cfs_period_us");
  const absl::StatusOr<std::string> period_text = ReadWholeFile(period_file);
  if (!period_text.ok()) {
    LOG(WARNING) << "ignoring CPU quota file " << file << ": no " << period_file << " beside it";
    return std::nullopt;
  }
  const std::optional<int64_t> quota = ParseMicroseconds(file, *quota_text);
  const std::optional<int64_t> period = ParseMicroseconds(period_file, *period_text);
  if (!quota.has_value() || !period.has_value()) return std::nullopt;
  return CgroupCpuQuota{*quota, *period, file};
}

std::string CpusText(int cpus) { return absl::StrCat(cpus, cpus == 1 ? " CPU" : " CPUs"); }

}  // namespace

std::optional<CgroupCpuQuota> TightestCgroupCpuQuota(const SystemRoots& roots) {
  std::optional<CgroupCpuQuota> tightest;
  for (const CgroupDir& dir : CgroupDirsFor("cpu", roots)) {
    const std::optional<CgroupCpuQuota> quota = dir.v2 ? ReadV2(dir.path) : ReadV1(dir.path);
    if (quota.has_value() && (!tightest.has_value() || quota->cpus() < tightest->cpus())) {
      tightest = quota;
    }
  }
  return tightest;
}

absl::StatusOr<int> AffinityCpuCount() {
  // Grow the mask until the kernel's fits (EINVAL means it is larger than ours).
  for (int cpus = CPU_SETSIZE; cpus <= (1 << 20); cpus *= 2) {
    cpu_set_t* set = CPU_ALLOC(cpus);
    if (set == nullptr) return absl::ResourceExhaustedError("CPU_ALLOC failed");
    const size_t size = CPU_ALLOC_SIZE(cpus);
    CPU_ZERO_S(size, set);
    const int result = sched_getaffinity(0, size, set);
    const int error = errno;
    const int count = CPU_COUNT_S(size, set);
    CPU_FREE(set);
    if (result == 0) return std::max(count, 1);
    if (error != EINVAL) {
      return ErrnoStatus(error, "sched_getaffinity");
    }
  }
  return absl::InternalError("sched_getaffinity: the CPU mask is larger than 2^20 CPUs");
}

std::string CpuLimit::Describe() const {
  const std::string affinity =
      affinity_cpus > 0 ? absl::StrCat("affinity ", CpusText(affinity_cpus)) : "affinity unknown";
  if (!quota.has_value()) return absl::StrCat(CpusText(cpus), " (", affinity, ", no CFS quota)");
  return absl::StrFormat("%s (CFS quota %.2f CPUs from %s, rounded down; %s)", CpusText(cpus),
                         quota->cpus(), quota->file, affinity);
}

CpuLimit ChooseCpuLimit(int affinity_cpus, const std::optional<CgroupCpuQuota>& quota) {
  CpuLimit limit;
  limit.affinity_cpus = std::max(affinity_cpus, 0);
  limit.quota = quota;
  double cpus = limit.affinity_cpus > 0 ? limit.affinity_cpus : HUGE_VAL;
  if (quota.has_value()) cpus = std::min(cpus, std::floor(quota->cpus()));
  // No usable bound (no affinity, and no quota or one of more CPUs than int holds): 1.
  limit.cpus = cpus < std::numeric_limits<int>::max() ? std::max(static_cast<int>(cpus), 1) : 1;
  return limit;
}

CpuLimit ProcessCpuLimit(const SystemRoots& roots) {
  absl::StatusOr<int> affinity = AffinityCpuCount();
  if (!affinity.ok()) {
    LOG(WARNING) << "cpu: " << affinity.status().message()
                 << "; counting the machine's CPUs instead";
    affinity = static_cast<int>(std::thread::hardware_concurrency());
  }
  return ChooseCpuLimit(*affinity, TightestCgroupCpuQuota(roots));
}

}  // namespace kiln
