#include "common/cgroup_files.h"

#include <sys/stat.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/text_proto_file.h"

namespace kiln {
namespace {

bool IsDirectory(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

// Appends the directories of the cgroup at `path` (as in /proc/self/cgroup) under `hierarchy`
// and of each of its ancestors up to `hierarchy` itself, leaf first, that exist.
void AppendHierarchy(const std::string& hierarchy, absl::string_view path, bool v2,
                     std::vector<CgroupDir>& dirs) {
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
    if (IsDirectory(dir)) dirs.push_back({dir, v2});
  }
}

}  // namespace

std::vector<CgroupDir> CgroupDirsFor(absl::string_view controller, const SystemRoots& roots) {
  std::vector<CgroupDir> dirs;
  const absl::StatusOr<std::string> self = ReadWholeFile(absl::StrCat(roots.proc, "/self/cgroup"));
  if (!self.ok()) return dirs;
  for (absl::string_view line : absl::StrSplit(*self, '\n', absl::SkipWhitespace())) {
    // hierarchy-ID:controller-list:cgroup-path; the path may itself contain ':'.
    const std::vector<absl::string_view> fields = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (fields.size() != 3) continue;
    const absl::string_view controllers = fields[1];
    const absl::string_view path = absl::StripTrailingAsciiWhitespace(fields[2]);
    if (fields[0] == "0" && controllers.empty()) {
      // cgroup v2: mounted at the root (unified) or at <root>/unified (hybrid, where it usually
      // has no controllers enabled and so none of their files).
      AppendHierarchy(roots.cgroup, path, /*v2=*/true, dirs);
      AppendHierarchy(absl::StrCat(roots.cgroup, "/unified"), path, /*v2=*/true, dirs);
      continue;
    }
    bool has_controller = false;
    for (absl::string_view name : absl::StrSplit(controllers, ',')) {
      has_controller = has_controller || name == controller;
    }
    if (!has_controller) continue;
    // cgroup v1: each hierarchy is mounted at a directory named by its controllers, and usually
    // reachable by each controller's name too (a symlink to a joint mount).
    AppendHierarchy(absl::StrCat(roots.cgroup, "/", controllers), path, /*v2=*/false, dirs);
    if (controllers != controller) {
      AppendHierarchy(absl::StrCat(roots.cgroup, "/", controller), path, /*v2=*/false, dirs);
    }
  }
  return dirs;
}

}  // namespace kiln
