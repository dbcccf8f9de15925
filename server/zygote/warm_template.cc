#include "server/zygote/warm_template.h"

#include <malloc.h>
#include <poll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/clock.h"
#include "common/fork_safety.h"
#include "common/idle_priority.h"
#include "common/memory_probe.h"
#include "common/shape.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "server/zygote/fork_loop.h"
#include "worker/warmup.h"

namespace kiln {
namespace {

// Warms `model` on one intra-op thread, at idle priority when `first` asks for it (and back at
// normal priority before returning, so that the workers it forks start there). `priority` says
// at which priority it warmed, for the log.
absl::StatusOr<WarmupOutcome> WarmOnce(const ZygoteModel& model, const internal::SpawnWorker& first,
                                       std::string& priority) {
  TorchModel::SetIntraOpThreads(1);
  std::unique_ptr<IdleWarming> idle;
  priority = "at normal priority";
  if (first.warm_at_idle_priority()) {
    absl::StatusOr<std::unique_ptr<IdleWarming>> started = IdleWarming::Start({});
    if (started.ok()) {
      idle = *std::move(started);
    } else {
      priority = absl::StrCat("at normal priority (", started.status().message(), ")");
    }
  }
  absl::StatusOr<WarmupOutcome> outcome = RunWarmup(*model.loaded, WarmupOptionsFor(first, model));
  if (idle != nullptr) {
    absl::StatusOr<IdleWarmingReport> finished = idle->Finish();
    if (!finished.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the warm template cannot return to normal CPU priority after warming at idle "
          "priority: ",
          finished.status().message(), " (run kiln-server with --warmup_priority=normal)"));
    }
    priority = finished->starved ? absl::StrFormat(
                                       "at idle priority for %.0f ms, then normal (starved: it got "
                                       "%.1f%% of the CPU time it waited for)",
                                       finished->idle_ms, 100 * finished->starved_cpu_share)
                                 : "at idle priority";
  }
  return outcome;
}

// Tells the worker that `fds` ({its channel end, its arena memfd}) were for why it will never
// start, and closes them.
void RefuseWorker(const internal::SpawnWorker& spawn, const std::vector<int>& fds,
                  const absl::Status& why) {
  FrameChannel channel(fds[0]);  // closes it when done
  internal::FromWorker frame;
  frame.mutable_failed()->set_message(absl::StrCat("the warm template of '", spawn.model(),
                                                   "' cannot fork workers: ", why.message()));
  (void)channel.Send(frame);
  close(fds[1]);
}

[[noreturn]] void RunWarmTemplate(const ZygoteModel& model, const internal::SpawnWorker& first,
                                  FrameChannel zygote) {
  SetForkingProcessSignals();
  const int signal_fd = SignalFdForChildren();
  if (signal_fd < 0) {
    PLOG(ERROR) << "warm template: signalfd";
    _exit(1);
  }
  const std::string& name = model.spec->config.name();
  const auto start = std::chrono::steady_clock::now();
  std::string priority;
  absl::StatusOr<WarmupOutcome> warm = WarmOnce(model, first, priority);
  // The warmup's freed buffers stay in malloc's free lists, private pages of the template that its
  // workers would copy on their first writes. Given back to the kernel before the first fork, they
  // cost neither: resnet50's template held 205-216 MB private with them, 140 MB without, and the
  // tree of 2 workers 490-510 MB PSS, 412-426 MB, with the workers' first calls unchanged.
  malloc_trim(0);
  TemplateWarmth warmth;
  warmth.pid = getpid();
  warmth.warmup_ms = MillisecondsSince(start);
  if (absl::StatusOr<ProportionalMemory> own = ReadProportionalMemory(); own.ok()) {
    warmth.private_bytes = own->private_bytes;
  }
  if (warm.ok()) {
    warmth.outcome = &*warm;
    LOG(INFO) << absl::StrFormat(
        "warm template of %s (pid %d): %d shapes warmed on one thread %s in %.0f ms; %.1f MB "
        "private",
        name, getpid(), static_cast<int>(WarmedShapes(*warm).size()), priority, warmth.warmup_ms,
        warmth.private_bytes / 1e6);
  } else {
    LOG(ERROR) << "warm template of " << name << ": " << warm.status();
  }

  std::map<pid_t, int> workers;
  while (true) {
    pollfd fds[2] = {{zygote.fd(), POLLIN, 0}, {signal_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      PLOG(ERROR) << "warm template: poll";
      _exit(1);
    }
    if (fds[1].revents & POLLIN) ReapChildren(signal_fd, workers, zygote);
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    internal::ZygoteCommand command;
    std::vector<int> received;
    if (absl::Status status = zygote.Receive(&command, &received); !status.ok()) {
      _exit(absl::IsUnavailable(status) ? 0 : 1);  // the zygote closed our channel, or died
    }
    if (!command.has_spawn() || received.size() != 2) {
      CloseAll(received);
      continue;
    }
    absl::Status safe = warm.status();
    if (safe.ok()) safe = CheckForkSafe("a worker from the warm template");
    if (!safe.ok()) {
      RefuseWorker(command.spawn(), received, safe);
      continue;
    }
    const pid_t pid = ForkWorker(command.spawn(), std::move(received), model, &warmth, zygote,
                                 {zygote.fd(), signal_fd});
    if (pid > 0) workers[pid] = command.spawn().worker_id();
  }
}

}  // namespace

absl::StatusOr<pid_t> ForkWarmTemplate(const ZygoteModel& model, const internal::SpawnWorker& first,
                                       FrameChannel& zygote_end,
                                       const std::vector<int>& close_in_child) {
  ASSIGN_OR_RETURN(auto pair, FrameChannel::CreatePair());
  absl::StatusOr<pid_t> pid = ForkChecked(absl::StrCat("the warm template of ", first.model()));
  if (!pid.ok()) return pid;
  if (*pid != 0) {
    zygote_end = std::move(pair.first);
    return pid;
  }
  pair.first.Close();
  CloseAll(close_in_child);
  const pid_t zygote = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != zygote) _exit(1);  // the zygote died before prctl took effect
  prctl(PR_SET_NAME, "kiln-template");
  RunWarmTemplate(model, first, std::move(pair.second));
}

}  // namespace kiln
