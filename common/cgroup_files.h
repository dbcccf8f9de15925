// Where a cgroup controller's files are for this process: its own cgroup and every ancestor, in
// cgroup v2 (unified) and v1 (one hierarchy per controller list), as the memory and CPU probes
// (common/memory_probe.h, common/cpu_probe.h) read their limits. The probes read the files with
// ReadWholeFile (common/text_proto_file.h).
//
// Ownership: nothing here holds state. Thread-safety: every function may be called from any
// thread; each reads the files it names and returns values.
#ifndef KILN_COMMON_CGROUP_FILES_H_
#define KILN_COMMON_CGROUP_FILES_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace kiln {

// Where the probes look. The defaults are the real mounts; tests point them at a fake tree.
struct SystemRoots {
  std::string proc = "/proc";
  // cgroup v2 is read at <cgroup> (unified) and <cgroup>/unified (hybrid); cgroup v1's controller
  // at <cgroup>/<controller list>, e.g. <cgroup>/memory or <cgroup>/cpu,cpuacct, and at
  // <cgroup>/<controller> (the usual symlink to a joint mount).
  std::string cgroup = "/sys/fs/cgroup";
};

// One cgroup directory that may hold a controller's files.
struct CgroupDir {
  std::string path;  // e.g. "/sys/fs/cgroup/system.slice/kiln.service"
  bool v2 = false;   // cgroup v2 (unified): memory.max, cpu.max; else v1's file names
};

// The directories of this process's cgroup and of each of its ancestors up to the hierarchy's
// root, leaf first, for the v1 hierarchy whose controller list includes `controller` and for the
// v2 hierarchy (from the "0::<path>" line of <proc>/self/cgroup). Directories that do not exist
// are left out, so a container whose cgroup mount is its own cgroup (the path in /proc names a
// directory only the host sees) still gets the mount's root. A path that leaves the cgroup
// namespace's view ("/../x") gives the root only. Empty when there is no <proc>/self/cgroup.
// The caller reads the files it needs; a v2 directory holds a controller's files only where the
// controller is enabled.
std::vector<CgroupDir> CgroupDirsFor(absl::string_view controller, const SystemRoots& roots);

}  // namespace kiln

#endif  // KILN_COMMON_CGROUP_FILES_H_
