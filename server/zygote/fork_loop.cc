#include "server/zygote/fork_loop.h"

#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/fork_safety.h"
#include "common/shape.h"
#include "common/shared_arena.h"
#include "glog/logging.h"

namespace kiln {

int SignalFdForChildren() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

void SetForkingProcessSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGTTIN, SIGTTOU}) {
    signal(sig, sig == SIGINT ? SIG_DFL : SIG_IGN);
    sigaddset(&set, sig);
  }
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

void CloseAll(const std::vector<int>& fds) {
  for (int fd : fds) close(fd);
}

WarmupOptions WarmupOptionsFor(const internal::SpawnWorker& spawn, const ZygoteModel& model) {
  WarmupOptions options;
  options.budget_bytes = spawn.memory_budget_bytes();
  for (const internal::Shape& shape : spawn.replay()) options.replay.push_back(FromProto(shape));
  if (const Tokenizer* tokenizer = model.tokenizer) {
    options.tokenize = [tokenizer](absl::string_view text) { return tokenizer->Encode(text); };
  }
  options.samples = model.samples;
  return options;
}

pid_t ForkWorker(const internal::SpawnWorker& spawn, std::vector<int> fds, const ZygoteModel& model,
                 const TemplateWarmth* warmth, FrameChannel& upstream,
                 const std::vector<int>& close_in_child) {
  absl::StatusOr<pid_t> pid = ForkChecked(absl::StrCat("worker ", spawn.worker_id()));
  if (!pid.ok()) {
    LOG(ERROR) << pid.status();
    CloseAll(fds);
    return -1;
  }
  if (*pid == 0) {
    CloseAll(close_in_child);
    absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Adopt(fds[1]);
    if (!arena.ok()) {
      LOG(ERROR) << "worker " << spawn.worker_id() << ": " << arena.status();
      _exit(1);
    }
    WorkerOptions options;
    options.worker_id = spawn.worker_id();
    options.intra_op_threads = spawn.intra_op_threads();
    options.intra_op_threads_automatic = spawn.intra_op_threads_automatic();
    options.device_index = spawn.device_index();
    options.warmup = spawn.warmup();
    options.warm_at_idle_priority = spawn.warm_at_idle_priority();
    options.warm = WarmupOptionsFor(spawn, model);
    options.from_template = warmth;
    options.cold_calls_for_test = spawn.cold_calls_for_test();
    RunWorker(*model.spec, model.loaded, options, FrameChannel(fds[0]), *std::move(arena));
  }
  CloseAll(fds);  // the worker has its own copies; the next worker must not inherit these
  internal::ZygoteEvent event;
  event.mutable_started()->set_worker_id(spawn.worker_id());
  event.mutable_started()->set_pid(*pid);
  if (!upstream.Send(event).ok()) _exit(0);
  return *pid;
}

std::vector<pid_t> ReapChildren(int signal_fd, std::map<pid_t, int>& workers,
                                FrameChannel& upstream) {
  signalfd_siginfo info;
  while (read(signal_fd, &info, sizeof(info)) == sizeof(info)) {
  }
  std::vector<pid_t> others;
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    auto it = workers.find(pid);
    if (it == workers.end()) {
      others.push_back(pid);
      continue;
    }
    internal::ZygoteEvent event;
    internal::WorkerExited& exited = *event.mutable_exited();
    exited.set_worker_id(it->second);
    exited.set_pid(pid);
    if (WIFEXITED(status)) exited.set_exit_code(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) exited.set_signal(WTERMSIG(status));
    workers.erase(it);
    if (!upstream.Send(event).ok()) _exit(0);
  }
  return others;
}

}  // namespace kiln
