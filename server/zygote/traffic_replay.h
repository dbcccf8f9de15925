// Traffic-shaped warmup, the master's side (docs/ARCHITECTURE.md, "Traffic-shaped warmup"): before
// the fork, find each model's recorded traffic (the config's warmup.traffic_profile, and
// <state_dir>/ <model>.traffic.pbtxt written by an earlier run) and pick the shapes its workers
// warm on top of the configured plan, plus the recorded request samples whose data they warm with.
#ifndef KILN_SERVER_ZYGOTE_TRAFFIC_REPLAY_H_
#define KILN_SERVER_ZYGOTE_TRAFFIC_REPLAY_H_

#include <map>
#include <string>
#include <vector>

#include "common/model_config_loader.h"
#include "common/shape.h"
#include "common/tensor.h"
#include "server/zygote/model_loading.h"

namespace kiln {

// At most this many recorded shapes per model are replayed, each with at least kMinReplayShare
// of the model's recorded requests: a rare shape is not worth a longer startup.
inline constexpr int kMaxReplayShapes = 16;
inline constexpr double kMinReplayShare = 0.01;

struct ModelReplay {
  std::vector<Shape> shapes;                 // servable shapes, most requested first
  std::vector<std::vector<Tensor>> samples;  // recorded requests' inputs (may be empty)
};

// The replay of every model that has recorded traffic. A profile that cannot be read, or a shape
// the model cannot serve (batch above max_batch_size, a length for a model without a variable
// dim, a length above a text model's max_length), is logged and skipped: recorded traffic only
// ever adds warmup, it never stops a start. `state_dir` empty: only the configs' profiles.
std::map<std::string, ModelReplay> LoadTrafficReplay(const std::vector<ModelSpec>& specs,
                                                     const std::string& state_dir);

// Points each loaded model's ZygoteModel::samples at its recorded requests in `replay` (which
// must outlive `models`), for models that have some.
void AttachSamples(std::map<std::string, ModelReplay>& replay, LoadedModels& models);

}  // namespace kiln

#endif  // KILN_SERVER_ZYGOTE_TRAFFIC_REPLAY_H_
