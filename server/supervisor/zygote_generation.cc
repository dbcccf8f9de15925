#include "server/supervisor/zygote_generation.h"

#include <signal.h>

#include <utility>

#include "common/process.h"

namespace kiln {

ZygoteGeneration::ZygoteGeneration(int number, ZygoteProcess zygote)
    : number_(number), pid_(zygote.pid), channel_(std::move(zygote.channel)) {}

bool ZygoteGeneration::Died(std::chrono::steady_clock::time_point now) {
  channel_.Close();
  // Its channel closed: it has exited, or is about to. Reaping it also settles its orphans: once
  // it is gone, its children are the master's (PR_SET_CHILD_SUBREAPER).
  Reap(std::chrono::milliseconds(0));
  while (!deaths_.empty() && now - deaths_.front() > kZygoteRestartWindow) deaths_.pop_front();
  deaths_.push_back(now);
  return static_cast<int>(deaths_.size()) <= kMaxZygoteRestarts;
}

void ZygoteGeneration::Replace(ZygoteProcess next) {
  pid_ = next.pid;
  channel_ = std::move(next.channel);
}

bool ZygoteGeneration::TryReap() {
  if (pid_ > 0 && TryReapChild(pid_)) pid_ = 0;
  return pid_ == 0;
}

void ZygoteGeneration::Reap(std::chrono::milliseconds grace) {
  if (pid_ > 0) ReapChild(pid_, grace);
  pid_ = 0;
}

void ZygoteGeneration::Kill() const {
  if (pid_ > 0) kill(pid_, SIGKILL);
}

}  // namespace kiln
