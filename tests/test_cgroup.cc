#include "tests/test_cgroup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/cgroup_files.h"
#include "common/status_macros.h"

namespace kiln::testing {
namespace {

// Writes `text` to the existing file at `path`.
absl::Status WriteExisting(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot open ", path));
  out << text;
  out.flush();
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", text, "' to ", path));
  return absl::OkStatus();
}

// A new child of this process's cgroup in the hierarchy of `controller`, written by `write`
// (given the directory and whether it is v2; it returns the limit file).
absl::StatusOr<std::unique_ptr<TestCgroup>> NewCgroup(
    const std::string& controller,
    const std::function<absl::StatusOr<std::string>(const std::string&, const CgroupDir&)>& write) {
  static std::atomic<int> serial{0};
  for (const CgroupDir& parent : CgroupDirsFor(controller, SystemRoots())) {
    const std::string dir = absl::StrCat(parent.path, "/kiln-test-", getpid(), "-", serial++);
    if (mkdir(dir.c_str(), 0755) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          "cannot create the cgroup ", dir, ": ", std::strerror(errno),
          " (tests need root and a writable cgroup file system for a ", controller, " limit)"));
    }
    absl::StatusOr<std::string> limit_file = write(dir, parent);
    if (!limit_file.ok()) {
      rmdir(dir.c_str());
      return limit_file.status();
    }
    return TestCgroup::Adopt(dir, *limit_file);
  }
  return absl::NotFoundError(
      absl::StrCat("no cgroup hierarchy with the ", controller, " controller is mounted"));
}

// v2 only: the controller must be enabled for the children of `parent`.
absl::Status CheckEnabled(const std::string& file, const std::string& controller,
                          const CgroupDir& parent) {
  if (access(file.c_str(), F_OK) == 0) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      "the ", controller, " controller is not enabled for the children of ", parent.path));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TestCgroup>> TestCgroup::CreateCpu(int64_t quota_us,
                                                                  int64_t period_us) {
  return NewCgroup(
      "cpu", [&](const std::string& dir, const CgroupDir& parent) -> absl::StatusOr<std::string> {
        if (parent.v2) {
          const std::string file = dir + "/cpu.max";
          RETURN_IF_ERROR(CheckEnabled(file, "cpu", parent));
          RETURN_IF_ERROR(WriteExisting(file, absl::StrCat(quota_us, " ", period_us)));
          return file;
        }
        RETURN_IF_ERROR(WriteExisting(dir + "/cpu.cfs_period_us", absl::StrCat(period_us)));
        RETURN_IF_ERROR(WriteExisting(dir + "/cpu.cfs_quota_us", absl::StrCat(quota_us)));
        return dir + "/cpu.cfs_quota_us";
      });
}

absl::StatusOr<std::unique_ptr<TestCgroup>> TestCgroup::CreateMemory(int64_t limit_bytes) {
  return NewCgroup(
      "memory",
      [&](const std::string& dir, const CgroupDir& parent) -> absl::StatusOr<std::string> {
        if (parent.v2) {
          const std::string file = dir + "/memory.max";
          RETURN_IF_ERROR(CheckEnabled(file, "memory", parent));
          RETURN_IF_ERROR(WriteExisting(file, absl::StrCat(limit_bytes)));
          return file;
        }
        (void)WriteExisting(dir + "/memory.swappiness",
                            "0");  // absent where swap accounting is off
        RETURN_IF_ERROR(WriteExisting(dir + "/memory.limit_in_bytes", absl::StrCat(limit_bytes)));
        return dir + "/memory.limit_in_bytes";
      });
}

std::unique_ptr<TestCgroup> TestCgroup::Adopt(std::string dir, std::string limit_file) {
  return std::unique_ptr<TestCgroup>(new TestCgroup(std::move(dir), std::move(limit_file)));
}

TestCgroup::~TestCgroup() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (rmdir(dir_.c_str()) != 0 && errno == EBUSY &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace kiln::testing
