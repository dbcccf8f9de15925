// A fake /proc and /sys/fs/cgroup under a temporary directory, for the probes that read cgroup
// limits (common/memory_probe.h, common/cpu_probe.h) through SystemRoots. For one test thread.
#ifndef KILN_TESTS_FAKE_SYSTEM_H_
#define KILN_TESTS_FAKE_SYSTEM_H_

#include <string>

#include "common/cgroup_files.h"
#include "tests/test_paths.h"

namespace kiln::testing {

class FakeSystem {
 public:
  FakeSystem() {
    roots_.proc = dir_.path() + "/proc";
    roots_.cgroup = dir_.path() + "/cgroup";
  }
  const SystemRoots& roots() const { return roots_; }
  // Writes proc/self/cgroup ("<id>:<controllers>:<path>" lines).
  void SelfCgroup(const std::string& contents) const {
    dir_.WriteFile("proc/self/cgroup", contents);
  }
  // Writes cgroup/<relative>; returns its full path.
  std::string Cgroup(const std::string& relative, const std::string& contents) const {
    return dir_.WriteFile("cgroup/" + relative, contents);
  }
  // Writes proc/<relative>; returns its full path.
  std::string Proc(const std::string& relative, const std::string& contents) const {
    return dir_.WriteFile("proc/" + relative, contents);
  }

 private:
  TempDir dir_;
  SystemRoots roots_;
};

}  // namespace kiln::testing

#endif  // KILN_TESTS_FAKE_SYSTEM_H_
