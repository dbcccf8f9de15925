// A real cgroup with a CFS CPU quota for a test to run processes in (common/process.h's InCgroup
// puts a command in it): a fresh child of this process's own cgroup in the hierarchy of the cpu
// controller (v1, or v2 where the controller is enabled for children), removed with the object.
// Where no such cgroup can be made (not root, a read-only /sys/fs/cgroup, no cpu controller) the
// factory says why and the test skips with that message.
//
// Ownership: owns the directory; every process put in it must be gone before the destructor
// (declare the cgroup before the processes). Thread-safety: one test thread.
#ifndef KILN_TESTS_CPU_CGROUP_H_
#define KILN_TESTS_CPU_CGROUP_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace kiln::testing {

class TestCpuCgroup {
 public:
  // A new cgroup allowing `quota_us` of CPU time per `period_us` (1 CPU: 100000 / 100000).
  static absl::StatusOr<std::unique_ptr<TestCpuCgroup>> Create(int64_t quota_us,
                                                               int64_t period_us = 100000);
  // Removes the directory, retrying for a few seconds while its last processes exit.
  ~TestCpuCgroup();
  TestCpuCgroup(const TestCpuCgroup&) = delete;
  TestCpuCgroup& operator=(const TestCpuCgroup&) = delete;

  const std::string& dir() const { return dir_; }
  // The file the quota was written to (cpu.cfs_quota_us or cpu.max), as the probe reports it.
  const std::string& quota_file() const { return quota_file_; }

 private:
  TestCpuCgroup(std::string dir, std::string quota_file)
      : dir_(std::move(dir)), quota_file_(std::move(quota_file)) {}
  std::string dir_;
  std::string quota_file_;
};

}  // namespace kiln::testing

#endif  // KILN_TESTS_CPU_CGROUP_H_
