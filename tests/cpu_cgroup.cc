#include "tests/cpu_cgroup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/cgroup_files.h"

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

}  // namespace

absl::StatusOr<std::unique_ptr<TestCpuCgroup>> TestCpuCgroup::Create(int64_t quota_us,
                                                                     int64_t period_us) {
  static std::atomic<int> serial{0};
  for (const CgroupDir& parent : CgroupDirsFor("cpu", SystemRoots())) {
    const std::string dir = absl::StrCat(parent.path, "/kiln-test-", getpid(), "-", serial++);
    if (mkdir(dir.c_str(), 0755) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create the cgroup ", dir, ": ", std::strerror(errno),
                       " (tests need root and "
                       "a writable cgroup file system for a CPU quota)"));
    }
    absl::Status written;
    std::string quota_file;
    if (parent.v2) {
      quota_file = dir + "/cpu.max";
      written = access(quota_file.c_str(), F_OK) == 0
                    ? WriteExisting(quota_file, absl::StrCat(quota_us, " ", period_us))
                    : absl::UnavailableError(absl::StrCat(
                          "the cpu controller is not enabled for the children of ", parent.path));
    } else {
      quota_file = dir + "/cpu.cfs_quota_us";
      written = WriteExisting(dir + "/cpu.cfs_period_us", absl::StrCat(period_us));
      if (written.ok()) written = WriteExisting(quota_file, absl::StrCat(quota_us));
    }
    if (!written.ok()) {
      rmdir(dir.c_str());
      return written;
    }
    return std::unique_ptr<TestCpuCgroup>(new TestCpuCgroup(dir, quota_file));
  }
  return absl::NotFoundError("no cgroup hierarchy with the cpu controller is mounted");
}

TestCpuCgroup::~TestCpuCgroup() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (rmdir(dir_.c_str()) != 0 && errno == EBUSY &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace kiln::testing
