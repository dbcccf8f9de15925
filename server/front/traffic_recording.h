// Traffic recording, the master's one place for it: every request that finishes is counted by
// the shape it ran as (and, with --record_samples, may be kept as a sample), and the counts are
// saved into --state_dir periodically and at shutdown for the next start's traffic-shaped warmup.
// The file formats live in common/traffic_profile.h; the replay side is
// server/zygote/traffic_replay.h.
#ifndef KILN_SERVER_FRONT_TRAFFIC_RECORDING_H_
#define KILN_SERVER_FRONT_TRAFFIC_RECORDING_H_

#include <chrono>
#include <string>

#include "common/model_config_loader.h"
#include "common/traffic_profile.h"
#include "server/codec/infer_codec.h"
#include "server/supervisor/worker_pool.h"

namespace kiln {

// How often the recorded traffic is written to the state directory while serving.
inline constexpr std::chrono::seconds kTrafficSaveInterval(30);

// Ownership: owns the recorder. Thread-safety: Completed is called from the pool's thread (and
// may be from any); SaveIfDue and Save from the master's main thread. The recorder has its own
// locks; next_save_ is the main thread's alone.
class TrafficRecording {
 public:
  // Records into `state_dir` (must not be empty), keeping up to `samples_per_model` requests per
  // model as samples (0: none).
  TrafficRecording(std::string state_dir, int samples_per_model);

  // A request of `spec` finished with `outcome`: counts the shape it ran as (nothing when it did
  // not run) and, when sampling, offers it as a sample if it succeeded: numeric inputs as they
  // came, text as the texts with the shape they ran as.
  void Completed(const ModelSpec& spec, const DecodedRequest& request, const InferOutcome& outcome);

  // Saves when kTrafficSaveInterval has passed since the last save.
  void SaveIfDue();
  // Saves now; a failure is logged (recorded traffic only ever adds warmup).
  void Save();

 private:
  const std::string state_dir_;
  const bool sampling_;
  TrafficRecorder recorder_;
  std::chrono::steady_clock::time_point next_save_;
};

}  // namespace kiln

#endif  // KILN_SERVER_FRONT_TRAFFIC_RECORDING_H_
