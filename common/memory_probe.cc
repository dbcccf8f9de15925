#include "common/memory_probe.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/text_proto_file.h"
#include "glog/logging.h"

namespace kiln {
namespace {

// A limit file's value: bytes, or std::nullopt for "max", values from kUnlimitedMemoryBytes up,
// negative values (v1 accepts -1 for "none") and anything malformed (logged).
std::optional<int64_t> ParseLimitValue(const std::string& file, absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  if (text == "max") return std::nullopt;
  int64_t bytes = 0;
  if (!absl::SimpleAtoi(text, &bytes)) {
    // Also what an out-of-range number gives; either way there is no usable limit here.
    LOG(WARNING) << "ignoring memory limit file " << file << ": \"" << text
                 << "\" is not a byte count or \"max\"";
    return std::nullopt;
  }
  if (bytes < 0 || bytes >= kUnlimitedMemoryBytes) return std::nullopt;
  return bytes;
}

// "VmRSS:\t  1234 kB" -> 1234 * 1024.
std::optional<int64_t> ParseKbLine(absl::string_view line, absl::string_view key) {
  if (!absl::ConsumePrefix(&line, key)) return std::nullopt;
  if (!absl::ConsumePrefix(&line, ":")) return std::nullopt;
  line = absl::StripAsciiWhitespace(line);
  if (!absl::ConsumeSuffix(&line, "kB")) return std::nullopt;
  int64_t kb = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kb) || kb < 0) return std::nullopt;
  return kb * 1024;
}

absl::StatusOr<ResidentMemory> ReadStatusFile(const std::string& path) {
  const absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::optional<int64_t> rss;
  std::optional<int64_t> hwm;
  std::optional<int64_t> anon;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (!rss.has_value()) rss = ParseKbLine(line, "VmRSS");
    if (!hwm.has_value()) hwm = ParseKbLine(line, "VmHWM");
    if (!anon.has_value()) anon = ParseKbLine(line, "RssAnon");
  }
  if (!rss.has_value() || !hwm.has_value()) {
    return absl::NotFoundError(
        absl::StrCat(path, " has no VmRSS and VmHWM lines (a zombie or kernel thread?)"));
  }
  return ResidentMemory{*rss, *hwm, anon.value_or(*rss)};
}

}  // namespace

std::optional<CgroupLimit> TightestCgroupMemoryLimit(const SystemRoots& roots) {
  std::optional<CgroupLimit> tightest;
  for (const CgroupDir& dir : CgroupDirsFor("memory", roots)) {
    const std::string file =
        absl::StrCat(dir.path, dir.v2 ? "/memory.max" : "/memory.limit_in_bytes");
    const absl::StatusOr<std::string> text = ReadWholeFile(file);
    if (!text.ok()) continue;  // the root (which has no limit), or not enabled here
    const std::optional<int64_t> bytes = ParseLimitValue(file, *text);
    if (bytes.has_value() && (!tightest.has_value() || *bytes < tightest->bytes)) {
      tightest = CgroupLimit{*bytes, file};
    }
  }
  return tightest;
}

absl::StatusOr<int64_t> PhysicalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) {
    return absl::InternalError("sysconf cannot tell the size of physical memory");
  }
  return int64_t{pages} * int64_t{page_size};
}

std::string MemoryLimit::Describe() const {
  return absl::StrFormat("%.1f MB from %s%s", bytes / 1e6,
                         source == Source::kCgroup ? "cgroup " : "", origin);
}

MemoryLimit ChooseMemoryLimit(const std::optional<CgroupLimit>& cgroup, int64_t physical_bytes) {
  if (cgroup.has_value() && (physical_bytes <= 0 || cgroup->bytes <= physical_bytes)) {
    return MemoryLimit{cgroup->bytes, MemoryLimit::Source::kCgroup, cgroup->file};
  }
  return MemoryLimit{physical_bytes > 0 ? physical_bytes : 0, MemoryLimit::Source::kPhysicalMemory,
                     "physical memory"};
}

absl::StatusOr<MemoryLimit> ProcessMemoryLimit(const SystemRoots& roots) {
  const std::optional<CgroupLimit> cgroup = TightestCgroupMemoryLimit(roots);
  const absl::StatusOr<int64_t> physical = PhysicalMemoryBytes();
  if (!physical.ok() && !cgroup.has_value()) return physical.status();
  return ChooseMemoryLimit(cgroup, physical.ok() ? *physical : 0);
}

absl::StatusOr<ResidentMemory> ReadResidentMemory(const SystemRoots& roots) {
  return ReadStatusFile(absl::StrCat(roots.proc, "/self/status"));
}

absl::StatusOr<ResidentMemory> ReadResidentMemoryOf(pid_t pid, const SystemRoots& roots) {
  return ReadStatusFile(absl::StrCat(roots.proc, "/", pid, "/status"));
}

absl::Status ResetPeakResident(const SystemRoots& roots) {
  const std::string path = absl::StrCat(roots.proc, "/self/clear_refs");
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoStatus(errno, absl::StrCat("cannot open ", path, " to reset the peak RSS"));
  }
  const ssize_t written = write(fd, "5", 1);
  const int error = errno;
  close(fd);
  if (written != 1) {
    return ErrnoStatus(error, absl::StrCat("writing 5 to ", path, " (reset the peak RSS) failed"));
  }
  return absl::OkStatus();
}

std::optional<ProportionalMemory> ParseSmapsRollup(absl::string_view text) {
  std::optional<int64_t> pss;
  ProportionalMemory memory;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!pss.has_value()) pss = ParseKbLine(line, "Pss");
    for (absl::string_view key : {"Private_Clean", "Private_Dirty"}) {
      if (std::optional<int64_t> bytes = ParseKbLine(line, key)) memory.private_bytes += *bytes;
    }
    for (absl::string_view key : {"Shared_Clean", "Shared_Dirty"}) {
      if (std::optional<int64_t> bytes = ParseKbLine(line, key)) memory.shared_bytes += *bytes;
    }
  }
  if (!pss.has_value()) return std::nullopt;
  memory.pss_bytes = *pss;
  return memory;
}

absl::StatusOr<ProportionalMemory> ReadProportionalMemory(pid_t pid, const SystemRoots& roots) {
  const std::string path =
      absl::StrCat(roots.proc, "/", pid == 0 ? "self" : absl::StrCat(pid), "/smaps_rollup");
  const absl::StatusOr<std::string> text = ReadWholeFile(path);
  std::optional<ProportionalMemory> memory = text.ok() ? ParseSmapsRollup(*text) : std::nullopt;
  if (!memory.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("cannot read the Pss of ", path, text.ok() ? " (no 'Pss: N kB' line)" : ""));
  }
  return *memory;
}

int64_t SumPssBytes(const std::vector<pid_t>& pids, const SystemRoots& roots) {
  int64_t total = 0;
  for (pid_t pid : pids) {
    const absl::StatusOr<ProportionalMemory> memory = ReadProportionalMemory(pid, roots);
    if (memory.ok()) total += memory->pss_bytes;
  }
  return total;
}

namespace {

// The `key` line of a memory.stat file, in bytes; 0 when it has none.
int64_t StatValue(absl::string_view text, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    int64_t value = 0;
    if (fields.size() == 2 && fields[0] == key && absl::SimpleAtoi(fields[1], &value)) return value;
  }
  return 0;
}

}  // namespace

absl::StatusOr<MemoryUsage> ChargedMemory(const MemoryLimit& limit, pid_t root,
                                          const SystemRoots& roots) {
  if (limit.source == MemoryLimit::Source::kPhysicalMemory) {
    return MemoryUsage{SumPssBytes(ProcessTree(root), roots), "the PSS of the server's processes"};
  }
  const size_t slash = limit.origin.rfind('/');
  const std::string dir = limit.origin.substr(0, slash == std::string::npos ? 0 : slash);
  const bool v2 = absl::EndsWith(limit.origin, "/memory.max");
  const std::string usage_file = dir + (v2 ? "/memory.current" : "/memory.usage_in_bytes");
  ASSIGN_OR_RETURN(const std::string usage_text, ReadWholeFile(usage_file));
  int64_t usage = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(usage_text), &usage)) {
    return absl::InternalError(absl::StrCat(usage_file, " holds no byte count"));
  }
  const absl::StatusOr<std::string> stat = ReadWholeFile(dir + "/memory.stat");
  const int64_t inactive =
      stat.ok() ? StatValue(*stat, v2 ? "inactive_file" : "total_inactive_file") : 0;
  return MemoryUsage{std::max<int64_t>(0, usage - inactive),
                     absl::StrCat("the cgroup's working set, ", usage_file, " - inactive_file")};
}

}  // namespace kiln
