// One zygote generation as the master sees it (docs/ARCHITECTURE.md, "Processes"): the zygote's
// process and channel, and the zygotes that died in the restart window.
// The pool holds one per generation number and is the only owner of each: nothing else keeps a
// zygote's pid or channel, and nothing else reaps it.
#ifndef KILN_SERVER_SUPERVISOR_ZYGOTE_GENERATION_H_
#define KILN_SERVER_SUPERVISOR_ZYGOTE_GENERATION_H_

#include <sys/types.h>

#include <chrono>
#include <deque>

#include "common/frame_channel.h"

namespace kiln {

// A started zygote: its pid (0 for one that is not a process of ours, such as the tests' fake
// zygote) and the master's end of its channel. A move-only value.
struct ZygoteProcess {
  pid_t pid = 0;
  FrameChannel channel{-1};
};

// Zygote deaths within the window that make the pool fatal instead of starting another.
inline constexpr int kMaxZygoteRestarts = 3;
inline constexpr std::chrono::seconds kZygoteRestartWindow(60);

// Ownership: owns the zygote's channel and the duty to reap its process. Thread-safety: none; the
// pool guards it with its lock.
class ZygoteGeneration {
 public:
  ZygoteGeneration(int number, ZygoteProcess zygote);
  ~ZygoteGeneration() = default;  // neither closes nor reaps: Close(), then Reap()
  ZygoteGeneration(ZygoteGeneration&&) = default;
  ZygoteGeneration& operator=(ZygoteGeneration&&) = default;

  int number() const { return number_; }
  pid_t pid() const { return pid_; }
  FrameChannel& channel() { return channel_; }
  int fd() const { return channel_.fd(); }
  bool open() const { return channel_.fd() >= 0; }

  // Closes the master's end: the zygote leaves on EOF, and so do the templates it forked.
  void Close() { channel_.Close(); }
  // The zygote closed its channel (it died): closes ours, reaps it (killing it if it lingers) and
  // counts the death. False when that makes more than kMaxZygoteRestarts deaths within
  // kZygoteRestartWindow (a crash loop: do not start another).
  bool Died(std::chrono::steady_clock::time_point now);
  // Takes `next` as this generation's zygote (after Died).
  void Replace(ZygoteProcess next);
  // Reaps the zygote if it has exited: true once there is nothing left to reap.
  bool TryReap();
  // Waits up to `grace` for the zygote to leave, then kills it, and reaps it.
  void Reap(std::chrono::milliseconds grace);
  // SIGKILL, without waiting (the master exits at once).
  void Kill() const;

 private:
  int number_;
  pid_t pid_;  // 0 once reaped (or never a process of ours)
  FrameChannel channel_;
  std::deque<std::chrono::steady_clock::time_point> deaths_;
};

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_ZYGOTE_GENERATION_H_
