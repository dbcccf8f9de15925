#include "server/zygote/zygote.h"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fork_safety.h"
#include "glog/logging.h"
#include "proto/worker_frames.pb.h"
#include "server/zygote/fork_loop.h"
#include "server/zygote/warm_template.h"

namespace kiln {
namespace {

// A model's warm template, as the zygote sees it.
struct Template {
  pid_t pid = 0;
  FrameChannel channel{-1};
};

// The zygote's state: its channel to the master, its children, and the fds a child must close.
// Ownership: owns the templates' channels. Thread-safety: the zygote has one thread.
class Zygote {
 public:
  Zygote(const std::map<std::string, ZygoteModel>& models, FrameChannel master, int signal_fd)
      : models_(models), master_(std::move(master)), signal_fd_(signal_fd) {}

  [[noreturn]] void Run();

 private:
  void OnSpawn(const internal::SpawnWorker& spawn, std::vector<int> fds);
  // Forwards `spawn` to its model's template, forking the template first when there is none.
  // False (fds untouched) when the template cannot be forked or reached.
  bool SendToTemplate(const ZygoteModel& model, const internal::SpawnWorker& spawn,
                      std::vector<int>& fds);
  // A retired version's template leaves (DropTemplate).
  void DropTemplate(const std::string& model);
  void OnTemplateEvent(const std::string& model);
  void OnChildrenExited();
  // The fds a child of the zygote must not keep: the master's channel, the signalfd and the
  // templates' channels.
  std::vector<int> FdsToCloseInChild() const;

  const std::map<std::string, ZygoteModel>& models_;
  FrameChannel master_;
  const int signal_fd_;
  std::map<std::string, Template> templates_;  // by model
  std::map<pid_t, int> workers_;               // pid -> worker id, ours and the templates'
};

std::vector<int> Zygote::FdsToCloseInChild() const {
  std::vector<int> fds = {master_.fd(), signal_fd_};
  for (const auto& [name, forked] : templates_) fds.push_back(forked.channel.fd());
  return fds;
}

bool Zygote::SendToTemplate(const ZygoteModel& model, const internal::SpawnWorker& spawn,
                            std::vector<int>& fds) {
  internal::ZygoteCommand command;
  *command.mutable_spawn() = spawn;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto found = templates_.find(spawn.model());
    if (found == templates_.end()) {
      Template forked;
      // The template must not keep this worker's fds: the master would never see its channel
      // close when it dies.
      std::vector<int> close_in_child = FdsToCloseInChild();
      close_in_child.insert(close_in_child.end(), fds.begin(), fds.end());
      absl::StatusOr<pid_t> pid = ForkWarmTemplate(model, spawn, forked.channel, close_in_child);
      if (!pid.ok()) {
        LOG(ERROR) << "zygote: " << pid.status();
        return false;
      }
      forked.pid = *pid;
      LOG(INFO) << "zygote: forked the warm template of " << spawn.model() << " (pid " << *pid
                << ")";
      found = templates_.emplace(spawn.model(), std::move(forked)).first;
    }
    if (found->second.channel.Send(command, fds).ok()) {
      CloseAll(fds);  // the template has its own copies now
      fds.clear();
      return true;
    }
    // It died since its last event: replace it, once.
    LOG(WARNING) << "zygote: the warm template of " << spawn.model() << " (pid "
                 << found->second.pid << ") is gone; forking a new one";
    templates_.erase(found);
  }
  return false;
}

void Zygote::OnSpawn(const internal::SpawnWorker& spawn, std::vector<int> fds) {
  auto model = models_.find(spawn.model());
  if (model == models_.end() || fds.size() != 2) {
    LOG(ERROR) << "zygote: bad spawn request for worker " << spawn.worker_id() << " of '"
               << spawn.model() << "' with " << fds.size() << " fds";
    CloseAll(fds);
    return;
  }
  if (spawn.from_template() && model->second.loaded != nullptr) {
    if (!SendToTemplate(model->second, spawn, fds)) CloseAll(fds);  // the master sees EOF
    return;
  }
  const pid_t pid =
      ForkWorker(spawn, std::move(fds), model->second, nullptr, master_, FdsToCloseInChild());
  if (pid > 0) workers_[pid] = spawn.worker_id();
}

void Zygote::DropTemplate(const std::string& model) {
  auto found = templates_.find(model);
  if (found == templates_.end()) return;
  LOG(INFO) << "zygote: the warm template of " << model << " (pid " << found->second.pid
            << ") leaves: its version was retired";
  templates_.erase(found);  // closes its channel: it exits, and OnChildrenExited reaps it
}

void Zygote::OnTemplateEvent(const std::string& model) {
  Template& forked = templates_.at(model);
  internal::ZygoteEvent event;
  absl::Status received = forked.channel.Receive(&event);
  if (absl::IsDeadlineExceeded(received)) return;
  if (!received.ok()) {
    // It died: its workers live on (they are ours to reap now), and the next request for a
    // worker of this model forks a new template.
    LOG(WARNING) << "zygote: lost the warm template of " << model << " (pid " << forked.pid
                 << "): " << received.message();
    templates_.erase(model);
    return;
  }
  if (event.has_started()) workers_[event.started().pid()] = event.started().worker_id();
  if (event.has_exited()) workers_.erase(event.exited().pid());
  if (!master_.Send(event).ok()) _exit(0);
}

void Zygote::OnChildrenExited() {
  for (pid_t pid : ReapChildren(signal_fd_, workers_, master_)) {
    for (auto& [model, forked] : templates_) {
      if (forked.pid == pid) LOG(WARNING) << "zygote: the warm template of " << model << " exited";
    }
  }
}

void Zygote::Run() {
  while (true) {
    std::vector<pollfd> fds = {{master_.fd(), POLLIN, 0}, {signal_fd_, POLLIN, 0}};
    std::vector<std::string> template_of;  // model of fds[i + 2]
    for (const auto& [model, forked] : templates_) {
      fds.push_back({forked.channel.fd(), POLLIN, 0});
      template_of.push_back(model);
    }
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      PLOG(ERROR) << "zygote: poll";
      _exit(1);
    }
    if (fds[1].revents & POLLIN) OnChildrenExited();
    for (size_t i = 0; i < template_of.size(); ++i) {
      if (fds[i + 2].revents & (POLLIN | POLLHUP | POLLERR)) OnTemplateEvent(template_of[i]);
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      internal::ZygoteCommand command;
      std::vector<int> received;
      absl::Status status = master_.Receive(&command, &received);
      if (!status.ok()) {
        // The master closed its end (shutdown) or died: the templates die with us (PDEATHSIG),
        // and every worker sees its own channel close.
        _exit(absl::IsUnavailable(status) ? 0 : 1);
      }
      if (command.has_spawn()) {
        OnSpawn(command.spawn(), std::move(received));
      } else {
        CloseAll(received);
        if (command.has_drop_template()) DropTemplate(command.drop_template().model());
      }
    }
  }
}

}  // namespace

void RunZygote(const std::map<std::string, ZygoteModel>& models, FrameChannel master) {
  SetForkingProcessSignals();
  const int signal_fd = SignalFdForChildren();
  if (signal_fd < 0) {
    PLOG(ERROR) << "zygote: signalfd";
    _exit(1);
  }
  // Workers forked by a template that died are reparented to us, and reaped and reported here.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  Zygote(models, std::move(master), signal_fd).Run();
}

absl::StatusOr<pid_t> ForkZygote(const std::map<std::string, ZygoteModel>& models,
                                 FrameChannel& master_end, FrameChannel zygote_end,
                                 const std::vector<int>& close_in_child) {
  absl::StatusOr<pid_t> pid = ForkChecked("the zygote");
  if (!pid.ok() || *pid != 0) return pid;
  master_end.Close();
  for (int fd : close_in_child) close(fd);
  const pid_t master = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != master) _exit(1);  // the master died before prctl took effect
  prctl(PR_SET_NAME, "kiln-zygote");
  RunZygote(models, std::move(zygote_end));
}

}  // namespace kiln
