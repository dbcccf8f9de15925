// A stand-in for the zygote and every worker it would fork, for WorkerPool unit tests: one
// thread of the test process speaks the real frames over the real FrameChannels, so the pool's
// supervision, queues and dispatch run exactly as in the server, without forking or LibTorch.
#ifndef KILN_TESTS_SERVER_FAKE_ZYGOTE_H_
#define KILN_TESTS_SERVER_FAKE_ZYGOTE_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/frame_channel.h"
#include "common/model_config_loader.h"
#include "common/shared_arena.h"
#include "proto/worker_frames.pb.h"

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
    int answer_delay_ms = 0;    // sleep this long before each answer (a slow model)
    double steady_ms = 0;       // the steady latency its warmup report gives for batch 1
    double steady_cpu_ms = 0;   // and the steady CPU time
    double call_cpu_ms = 0;     // the CPU time each answer reports (compute_cpu_ms)
    // The CPU time each worker's first answers report instead, in order (a call a noisy machine
    // stretched); call_cpu_ms after them.
    std::vector<double> first_calls_cpu_ms = {};
    int64_t private_peak_bytes = 0;  // its warmup report's private peak
    int intra_op_threads = 1;        // what its warmup report says it runs
    // The batch sizes its warmup report says it warmed, each at steady_ms / steady_cpu_ms.
    std::vector<int> warmed_batches = {1};
  };

  // What the fake workers answer a call with: `output` (FP32) of `elements_per_row` per row of
  // the call's first input, zeros, or with `echo` each row's first values of that input (FP32,
  // at least elements_per_row of them); no output when `output` is empty.
  struct Outputs {
    std::string output;
    int64_t elements_per_row = 0;
    bool echo = false;
  };

  // Serves the pool's end of `zygote` (the end WorkerPool::Start was not given).
  FakeZygote(FrameChannel zygote, Outputs outputs);
  explicit FakeZygote(FrameChannel zygote) : FakeZygote(std::move(zygote), Outputs()) {}
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
  // Answers the held call received last with OK (whichever worker holds it).
  void AnswerNewestHeld();
  // Makes worker `id` send a result for a call it never got (a protocol break).
  void SendStrayResult(int id);

 private:
  struct Worker {
    Behaviour behaviour;  // as it was when the worker was spawned
    FrameChannel channel;
    std::unique_ptr<SharedArena> arena;
    std::vector<internal::InferCall> held;
    size_t answered = 0;  // calls answered so far
  };
  void Loop();
  void Run(std::function<void()> action);
  void HandleZygoteFrame() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleWorkerFrame(int id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Answer(Worker& worker, const internal::InferCall& call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void KillLocked(int id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Outputs outputs_;
  std::atomic<bool> stop_{false};
  mutable absl::Mutex mu_;
  FrameChannel zygote_ ABSL_GUARDED_BY(mu_);
  Behaviour behaviour_ ABSL_GUARDED_BY(mu_);
  std::map<int, Worker> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<int> held_by_ ABSL_GUARDED_BY(mu_);  // the worker of each call held, oldest first
  int spawns_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::function<void()>> actions_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// The model the tests serve with a FakeZygote: "m", up to 4 rows a batch of FP32 "x" [4] in and
// FP32 "y" [2] out (FakeZygote::Outputs{"y", 2} answers it), warmup on, with this queue size and
// readiness quorum, served as `version`.
ModelSpec FakeModelSpec(int max_queue_size, int quorum, int64_t version = 1);

// Polls `condition` every millisecond until it holds or `timeout_s` passes; returns whether it
// held.
bool WaitUntil(const std::function<bool()>& condition, double timeout_s = 10);

}  // namespace kiln::testing

#endif  // KILN_TESTS_SERVER_FAKE_ZYGOTE_H_
