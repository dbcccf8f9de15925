#include "server/zygote/traffic_replay.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <utility>

#include "common/traffic_profile.h"
#include "glog/logging.h"

namespace kiln {
namespace {

// `samples` without the text requests whose texts cannot be read (logged), for a text model.
std::vector<std::vector<Tensor>> UsableSamples(const ModelConfig& config,
                                               std::vector<std::vector<Tensor>> samples,
                                               const std::string& path) {
  if (!config.has_tokenizer()) return samples;
  std::vector<std::vector<Tensor>> usable;
  for (std::vector<Tensor>& sample : samples) {
    absl::StatusOr<std::optional<std::vector<std::string>>> texts =
        TextSampleTexts(sample, config.tokenizer().text_input());
    if (texts.ok()) {
      usable.push_back(std::move(sample));
    } else {
      LOG(WARNING) << config.name() << ": a recorded request in " << path
                   << " not used: " << texts.status().message();
    }
  }
  return usable;
}

}  // namespace

std::map<std::string, ModelReplay> LoadTrafficReplay(const std::vector<ModelSpec>& specs,
                                                     const std::string& state_dir) {
  namespace fs = std::filesystem;
  std::map<std::string, ModelReplay> replays;
  for (const ModelSpec& spec : specs) {
    const ModelConfig& config = spec.config;
    std::vector<std::string> paths;
    if (!config.warmup().traffic_profile().empty()) {
      paths.push_back((fs::path(spec.directory) / config.warmup().traffic_profile()).string());
    }
    if (!state_dir.empty()) paths.push_back(TrafficProfilePath(state_dir, config.name()));
    ModelReplay replay;
    for (const std::string& path : paths) {
      std::error_code ec;
      if (!fs::exists(path, ec)) continue;
      absl::StatusOr<TrafficProfile> profile = LoadTrafficProfile(path);
      if (!profile.ok()) {
        LOG(WARNING) << config.name()
                     << ": recorded traffic not replayed: " << profile.status().message();
        continue;
      }
      for (const Shape& shape : ShapesToReplay(*profile, kMaxReplayShapes, kMinReplayShare)) {
        const std::string why = Unservable(config, shape);
        const bool known =
            std::find(replay.shapes.begin(), replay.shapes.end(), shape) != replay.shapes.end();
        if (!why.empty()) {
          LOG(WARNING) << config.name() << ": recorded shape batch " << shape.batch_size
                       << " length " << shape.sequence_length << " in " << path
                       << " not replayed: " << why;
        } else if (!known && static_cast<int>(replay.shapes.size()) < kMaxReplayShapes) {
          replay.shapes.push_back(shape);
        }
      }
    }
    if (!state_dir.empty()) {
      const std::string samples_path = TrafficSamplesPath(state_dir, config.name());
      std::error_code ec;
      if (fs::exists(samples_path, ec)) {
        absl::StatusOr<std::vector<std::vector<Tensor>>> samples = LoadTrafficSamples(samples_path);
        if (samples.ok()) {
          replay.samples = UsableSamples(config, *std::move(samples), samples_path);
        } else {
          LOG(WARNING) << config.name()
                       << ": recorded samples not used: " << samples.status().message();
        }
      }
    }
    if (!replay.shapes.empty() || !replay.samples.empty()) {
      LOG(INFO) << config.name() << ": traffic-shaped warmup replays " << replay.shapes.size()
                << " recorded shape(s) and " << replay.samples.size() << " recorded request(s)";
      replays[config.name()] = std::move(replay);
    }
  }
  return replays;
}

void AttachSamples(std::map<std::string, ModelReplay>& replay, LoadedModels& models) {
  for (auto& [key, model] : models.by_key) {
    auto found = replay.find(model.spec->config.name());
    if (found != replay.end() && !found->second.samples.empty()) {
      model.samples = &found->second.samples;
    }
  }
}

}  // namespace kiln
