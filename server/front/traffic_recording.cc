#include "server/front/traffic_recording.h"

#include <utility>
#include <vector>

#include "glog/logging.h"

namespace kiln {

TrafficRecording::TrafficRecording(std::string state_dir, int samples_per_model)
    : state_dir_(std::move(state_dir)),
      sampling_(samples_per_model > 0),
      recorder_(samples_per_model),
      next_save_(std::chrono::steady_clock::now() + kTrafficSaveInterval) {}

void TrafficRecording::Completed(const ModelSpec& spec, const DecodedRequest& request,
                                 const InferOutcome& outcome) {
  if (!outcome.ran_as.has_value()) return;
  const std::string& model = spec.config.name();
  recorder_.Record(model, *outcome.ran_as);
  if (!sampling_ || !outcome.outputs.ok()) return;
  if (request.text) {
    recorder_.RecordTextSample(model, spec.config.tokenizer().text_input(),
                               request.inputs.front().strings, *outcome.ran_as);
    return;
  }
  std::vector<TensorView> inputs;
  for (const DecodedInput& input : request.inputs) inputs.push_back(input.view);
  recorder_.RecordSample(model, inputs);
}

void TrafficRecording::SaveIfDue() {
  if (std::chrono::steady_clock::now() < next_save_) return;
  Save();
  next_save_ = std::chrono::steady_clock::now() + kTrafficSaveInterval;
}

void TrafficRecording::Save() {
  if (absl::Status saved = recorder_.Save(state_dir_); !saved.ok()) {
    LOG(WARNING) << "traffic profile not saved: " << saved.message();
  }
}

}  // namespace kiln
