#include "common/fork_safety.h"

#include <dirent.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "glog/logging.h"

namespace kiln {
namespace {

std::atomic<bool> grpc_created{false};
std::atomic<int> forward_threads{0};  // the most intra-op threads a pass ran with
std::atomic<bool> cuda_called{false};

}  // namespace

void NoteGrpcObjectCreated() { grpc_created.store(true); }
void NoteForwardPass(int intra_op_threads) {
  int seen = forward_threads.load();
  while (intra_op_threads > seen &&
         !forward_threads.compare_exchange_weak(seen, intra_op_threads)) {
  }
}
void NoteCudaCall() { cuda_called.store(true); }

int CountThreads() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  int threads = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++threads;
  }
  closedir(dir);
  return threads;
}

absl::Status CheckForkSafe(absl::string_view what) {
  std::vector<std::string> reasons;
  const int threads = CountThreads();
  if (threads != 1) {
    reasons.push_back(threads < 0 ? "/proc/self/task cannot be read"
                                  : absl::StrCat(threads, " threads are running (fork needs 1)"));
  }
  if (grpc_created.load()) reasons.push_back("a gRPC object was created");
  if (const int ran = forward_threads.load(); ran > 1) {
    reasons.push_back(absl::StrCat("a forward pass ran on ", ran,
                                   " intra-op threads (OpenMP may hang the child)"));
  }
  if (cuda_called.load()) reasons.push_back("CUDA was called");
  if (reasons.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("refusing to fork ", what, ": ", absl::StrJoin(reasons, "; ")));
}

absl::StatusOr<pid_t> ForkChecked(absl::string_view what) {
  RETURN_IF_ERROR(CheckForkSafe(what));
  google::FlushLogFiles(google::GLOG_INFO);
  const pid_t pid = fork();
  if (pid < 0) return ErrnoStatus(errno, absl::StrCat("fork ", what));
  return pid;
}

}  // namespace kiln
