// A stand-in for the zygote and every worker it would fork, for WorkerPool unit tests: one
// thread of the test process speaks the real frames over the real FrameChannels, so the pool's
// supervision, queues and dispatch run exactly as in the server, without forking or LibTorch.
#ifndef KILN_TESTS_SERVER_FAKE_ZYGOTE_H_
#define KILN_TESTS_SERVER_FAKE_ZYGOTE_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/frame_channel.h"

namespace kiln::testing {

// Ownership: owns its end of the zygote channel, every fake worker's channel and its thread.
// Thread-safety: every public method is safe from any thread; the frames are sent and received
// only on the fake's own thread (the test thread queues actions for it).
class FakeZygote {
 public:
  // What a newly spawned fake worker does.
  struct Behaviour {
    bool report_ready = true;   // send its warmup report at once (else it stays warming)
    bool die_at_start = false;  // close its channel at once, before any report
    bool answer_calls = true;   // answer each call at once (else hold it until AnswerHeld)
  };

  // Serves the pool's end of `zygote` (the end WorkerPool::Start was not given).
  explicit FakeZygote(FrameChannel zygote);
  ~FakeZygote();
  FakeZygote(const FakeZygote&) = delete;
  FakeZygote& operator=(const FakeZygote&) = delete;

  void SetBehaviour(const Behaviour& behaviour);

  int spawns() const;             // spawn commands received so far
  std::vector<int> live() const;  // ids of the workers whose channel is open
  int held_calls() const;         // calls received and not answered

  // Closes worker `id`'s channel (the pool sees EOF, as when a worker dies) and reports it exited.
  void Kill(int id);
  // Answers every held call with OK.
  void AnswerHeld();
  // Makes worker `id` send a result for a call it never got (a protocol break).
  void SendStrayResult(int id);

 private:
  struct Worker {
    FrameChannel channel;
    std::vector<uint64_t> held;  // call ids
  };
  void Loop();
  void Run(std::function<void()> action);
  void HandleZygoteFrame() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleWorkerFrame(int id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Answer(Worker& worker, uint64_t call_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void KillLocked(int id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::atomic<bool> stop_{false};
  mutable absl::Mutex mu_;
  FrameChannel zygote_ ABSL_GUARDED_BY(mu_);
  Behaviour behaviour_ ABSL_GUARDED_BY(mu_);
  std::map<int, Worker> workers_ ABSL_GUARDED_BY(mu_);
  int spawns_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::function<void()>> actions_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Polls `condition` every millisecond until it holds or `timeout_s` passes; returns whether it
// held.
bool WaitUntil(const std::function<bool()>& condition, double timeout_s = 10);

}  // namespace kiln::testing

#endif  // KILN_TESTS_SERVER_FAKE_ZYGOTE_H_
