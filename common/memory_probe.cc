#include "common/memory_probe.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "glog/logging.h"

namespace kiln {
namespace {

// The whole file, or std::nullopt when it cannot be opened.
std::optional<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

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

// Reads `file_name` in the cgroup at `path` (as in /proc/self/cgroup) under `hierarchy`, and in
// each of its ancestors up to `hierarchy` itself; lowers `tightest` to each limit found.
void TightenFromHierarchy(const std::string& hierarchy, absl::string_view path,
                          absl::string_view file_name, std::optional<CgroupLimit>& tightest) {
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    // "/.." and the like: the cgroup is outside this cgroup namespace's view; only the root of
    // the hierarchy as mounted here can be read.
    if (part == ".." || part == ".") {
      parts.clear();
      break;
    }
    parts.emplace_back(part);
  }
  for (size_t depth = parts.size() + 1; depth-- > 0;) {
    std::string dir = hierarchy;
    for (size_t i = 0; i < depth; ++i) absl::StrAppend(&dir, "/", parts[i]);
    const std::string file = absl::StrCat(dir, "/", file_name);
    const std::optional<std::string> text = ReadWholeFile(file);
    if (!text.has_value()) continue;  // no such cgroup here, or the root (which has no limit)
    const std::optional<int64_t> bytes = ParseLimitValue(file, *text);
    if (bytes.has_value() && (!tightest.has_value() || *bytes < tightest->bytes)) {
      tightest = CgroupLimit{*bytes, file};
    }
  }
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
  const std::optional<std::string> text = ReadWholeFile(path);
  if (!text.has_value()) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::optional<int64_t> rss;
  std::optional<int64_t> hwm;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (!rss.has_value()) rss = ParseKbLine(line, "VmRSS");
    if (!hwm.has_value()) hwm = ParseKbLine(line, "VmHWM");
  }
  if (!rss.has_value() || !hwm.has_value()) {
    return absl::NotFoundError(
        absl::StrCat(path, " has no VmRSS and VmHWM lines (a zombie or kernel thread?)"));
  }
  return ResidentMemory{*rss, *hwm};
}

}  // namespace

std::optional<CgroupLimit> TightestCgroupMemoryLimit(const MemoryProbeRoots& roots) {
  const std::optional<std::string> self = ReadWholeFile(absl::StrCat(roots.proc, "/self/cgroup"));
  if (!self.has_value()) return std::nullopt;
  std::optional<CgroupLimit> tightest;
  for (absl::string_view line : absl::StrSplit(*self, '\n', absl::SkipWhitespace())) {
    // hierarchy-ID:controller-list:cgroup-path; the path may itself contain ':'.
    const std::vector<absl::string_view> fields = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (fields.size() != 3) continue;
    const absl::string_view controllers = fields[1];
    const absl::string_view path = absl::StripTrailingAsciiWhitespace(fields[2]);
    if (fields[0] == "0" && controllers.empty()) {
      // cgroup v2: mounted at the root (unified) or at <root>/unified (hybrid, where it usually
      // has no memory controller and so no memory.max).
      TightenFromHierarchy(roots.cgroup, path, "memory.max", tightest);
      TightenFromHierarchy(absl::StrCat(roots.cgroup, "/unified"), path, "memory.max", tightest);
      continue;
    }
    bool has_memory = false;
    for (absl::string_view controller : absl::StrSplit(controllers, ',')) {
      if (controller == "memory") has_memory = true;
    }
    if (!has_memory) continue;
    // cgroup v1: each hierarchy is mounted at a directory named by its controllers.
    TightenFromHierarchy(absl::StrCat(roots.cgroup, "/", controllers), path,
                         "memory.limit_in_bytes", tightest);
    if (controllers != "memory") {
      TightenFromHierarchy(absl::StrCat(roots.cgroup, "/memory"), path, "memory.limit_in_bytes",
                           tightest);
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

absl::StatusOr<MemoryLimit> ProcessMemoryLimit(const MemoryProbeRoots& roots) {
  const std::optional<CgroupLimit> cgroup = TightestCgroupMemoryLimit(roots);
  const absl::StatusOr<int64_t> physical = PhysicalMemoryBytes();
  if (!physical.ok() && !cgroup.has_value()) return physical.status();
  return ChooseMemoryLimit(cgroup, physical.ok() ? *physical : 0);
}

absl::StatusOr<ResidentMemory> ReadResidentMemory(const MemoryProbeRoots& roots) {
  return ReadStatusFile(absl::StrCat(roots.proc, "/self/status"));
}

absl::StatusOr<ResidentMemory> ReadResidentMemoryOf(pid_t pid, const MemoryProbeRoots& roots) {
  return ReadStatusFile(absl::StrCat(roots.proc, "/", pid, "/status"));
}

absl::Status ResetPeakResident(const MemoryProbeRoots& roots) {
  const std::string path = absl::StrCat(roots.proc, "/self/clear_refs");
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", path, " to reset the peak RSS: ", std::strerror(errno)));
  }
  const ssize_t written = write(fd, "5", 1);
  const int error = errno;
  close(fd);
  if (written != 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "writing 5 to ", path, " (reset the peak RSS) failed: ", std::strerror(error)));
  }
  return absl::OkStatus();
}

int64_t SumResidentBytes(const std::vector<pid_t>& pids, const MemoryProbeRoots& roots) {
  int64_t total = 0;
  for (pid_t pid : pids) {
    const absl::StatusOr<ResidentMemory> memory = ReadResidentMemoryOf(pid, roots);
    if (memory.ok()) total += memory->resident_bytes;
  }
  return total;
}

}  // namespace kiln
