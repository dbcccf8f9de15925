#include "server/zygote.h"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fork_safety.h"
#include "common/shape.h"
#include "common/shared_arena.h"
#include "glog/logging.h"
#include "proto/worker_frames.pb.h"
#include "worker/worker_process.h"

namespace kiln {
namespace {

// SIGCHLD arrives through a signalfd: no handler at all, and poll() sees it beside the channel.
int SignalFdForChildren() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

// The master's control signals were blocked for its own signal loop. TERM and HUP stay the
// master's: systemd sends TERM to the whole cgroup, and the zygote must outlive the master's
// drain, so it ignores them and leaves when the master closes its channel. INT (Ctrl-C in a
// terminal, "exit at once") gets its default back.
void SetZygoteSignals() {
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

// Forks the worker `spawn` asks for; returns its pid, or -1 when it could not.
pid_t Spawn(const internal::SpawnWorker& spawn, std::vector<int> fds,
            const std::map<std::string, ZygoteModel>& models, FrameChannel& master, int signal_fd) {
  auto model = models.find(spawn.model());
  if (model == models.end() || fds.size() != 2) {
    LOG(ERROR) << "zygote: bad spawn request for worker " << spawn.worker_id() << " of '"
               << spawn.model() << "' with " << fds.size() << " fds";
    CloseAll(fds);
    return -1;
  }
  absl::StatusOr<pid_t> pid = ForkChecked(absl::StrCat("worker ", spawn.worker_id()));
  if (!pid.ok()) {
    LOG(ERROR) << "zygote: " << pid.status();
    CloseAll(fds);
    return -1;  // the master sees no `started`, and EOF on the worker's channel
  }
  if (*pid == 0) {
    master.Close();
    close(signal_fd);
    absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Adopt(fds[1]);
    if (!arena.ok()) {
      LOG(ERROR) << "worker " << spawn.worker_id() << ": " << arena.status();
      _exit(1);
    }
    WorkerOptions options;
    options.worker_id = spawn.worker_id();
    options.intra_op_threads = spawn.intra_op_threads();
    options.device_index = spawn.device_index();
    options.warmup = spawn.warmup();
    options.memory_budget_bytes = spawn.memory_budget_bytes();
    options.warm_at_idle_priority = spawn.warm_at_idle_priority();
    for (const internal::Shape& shape : spawn.replay()) options.replay.push_back(FromProto(shape));
    options.samples = model->second.samples;
    if (const Tokenizer* tokenizer = model->second.tokenizer) {
      options.tokenize = [tokenizer](absl::string_view text) { return tokenizer->Encode(text); };
    }
    RunWorker(*model->second.spec, model->second.loaded, options, FrameChannel(fds[0]),
              *std::move(arena));
  }
  CloseAll(fds);  // the worker has its own copies; the next worker must not inherit these
  internal::ZygoteEvent event;
  event.mutable_started()->set_worker_id(spawn.worker_id());
  event.mutable_started()->set_pid(*pid);
  if (!master.Send(event).ok()) _exit(0);
  return *pid;
}

// Reaps every exited child and reports it; `workers` maps pid -> worker id.
void ReapChildren(std::map<pid_t, int>& workers, FrameChannel& master) {
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    internal::ZygoteEvent event;
    internal::WorkerExited& exited = *event.mutable_exited();
    auto it = workers.find(pid);
    exited.set_worker_id(it == workers.end() ? -1 : it->second);
    exited.set_pid(pid);
    if (WIFEXITED(status)) exited.set_exit_code(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) exited.set_signal(WTERMSIG(status));
    if (it != workers.end()) workers.erase(it);
    if (!master.Send(event).ok()) _exit(0);
  }
}

}  // namespace

void RunZygote(const std::map<std::string, ZygoteModel>& models, FrameChannel master) {
  SetZygoteSignals();
  const int signal_fd = SignalFdForChildren();
  if (signal_fd < 0) {
    PLOG(ERROR) << "zygote: signalfd";
    _exit(1);
  }
  std::map<pid_t, int> workers;
  while (true) {
    pollfd fds[2] = {{master.fd(), POLLIN, 0}, {signal_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      PLOG(ERROR) << "zygote: poll";
      _exit(1);
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info;
      while (read(signal_fd, &info, sizeof(info)) == sizeof(info)) {
      }
      ReapChildren(workers, master);
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      internal::ZygoteCommand command;
      std::vector<int> received;
      absl::Status status = master.Receive(&command, &received);
      if (!status.ok()) {
        // The master closed its end (shutdown) or died: the workers die with us (PDEATHSIG).
        _exit(absl::IsUnavailable(status) ? 0 : 1);
      }
      if (command.has_spawn()) {
        const pid_t pid = Spawn(command.spawn(), std::move(received), models, master, signal_fd);
        if (pid > 0) workers[pid] = command.spawn().worker_id();
      } else {
        CloseAll(received);
      }
    }
  }
}

absl::StatusOr<pid_t> ForkZygote(const std::map<std::string, ZygoteModel>& models,
                                 FrameChannel& master_end, FrameChannel zygote_end) {
  absl::StatusOr<pid_t> pid = ForkChecked("the zygote");
  if (!pid.ok() || *pid != 0) return pid;
  master_end.Close();
  const pid_t master = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != master) _exit(1);  // the master died before prctl took effect
  prctl(PR_SET_NAME, "kiln-zygote");
  RunZygote(models, std::move(zygote_end));
}

void ReapZygote(pid_t zygote, bool now) {
  for (int i = 0; i < 50 && !now; ++i) {
    if (waitpid(zygote, nullptr, WNOHANG) == zygote) return;
    usleep(100'000);
  }
  kill(zygote, SIGKILL);
  waitpid(zygote, nullptr, 0);
}

}  // namespace kiln
