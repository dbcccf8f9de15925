// A real cgroup with a CFS CPU quota or a memory limit for a test to run processes in
// (common/process.h's InCgroup puts a command in it): a fresh child of this process's own cgroup
// in the hierarchy of the cpu or memory controller (v1, or v2 where the controller is enabled for
// children), removed with the object. Where no such cgroup can be made (not root, a read-only
// /sys/fs/cgroup, no such controller) the factory says why and the test skips with that message.
//
// Ownership: owns the directory; every process put in it must be gone before the destructor
// (declare the cgroup before the processes). Thread-safety: one test thread.
#ifndef KILN_TESTS_TEST_CGROUP_H_
#define KILN_TESTS_TEST_CGROUP_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace kiln::testing {

class TestCgroup {
 public:
  // A new cgroup allowing `quota_us` of CPU time per `period_us` (1 CPU: 100000 / 100000).
  static absl::StatusOr<std::unique_ptr<TestCgroup>> CreateCpu(int64_t quota_us,
                                                               int64_t period_us = 100000);
  // A new cgroup whose processes may use `limit_bytes` of memory (memory.max or
  // memory.limit_in_bytes); v1 also gets memory.swappiness 0, so that the limit means RAM.
  static absl::StatusOr<std::unique_ptr<TestCgroup>> CreateMemory(int64_t limit_bytes);
  // Takes over the cgroup directory `dir` (the factories' last step).
  static std::unique_ptr<TestCgroup> Adopt(std::string dir, std::string limit_file);
  // Removes the directory, retrying for a few seconds while its last processes exit.
  ~TestCgroup();
  TestCgroup(const TestCgroup&) = delete;
  TestCgroup& operator=(const TestCgroup&) = delete;

  const std::string& dir() const { return dir_; }
  // The file the quota or limit was written to (cpu.cfs_quota_us or cpu.max, memory.max or
  // memory.limit_in_bytes), as the probes report it.
  const std::string& limit_file() const { return limit_file_; }

 private:
  TestCgroup(std::string dir, std::string limit_file)
      : dir_(std::move(dir)), limit_file_(std::move(limit_file)) {}
  std::string dir_;
  std::string limit_file_;
};

}  // namespace kiln::testing

#endif  // KILN_TESTS_TEST_CGROUP_H_
