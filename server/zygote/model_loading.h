// What the master loads before it forks the zygote, so that the zygote and every worker inherit
// it (docs/ARCHITECTURE.md, "Startup timeline"): per model its tokenizer and, unless weights are
// not shared (the --share_weights=off baseline), the model itself: mapped weights, TorchScript,
// parameters rebound to views of the mapping.
#ifndef KILN_SERVER_ZYGOTE_MODEL_LOADING_H_
#define KILN_SERVER_ZYGOTE_MODEL_LOADING_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config_loader.h"
#include "server/zygote/zygote_model.h"
#include "worker/tokenizer.h"
#include "worker/torch_model.h"

namespace kiln {

// Ownership: owns the loaded models and tokenizers; `by_key` points into them and into the
// specs passed to LoadModels, which must outlive it. Thread-safety: none needed; it is built
// before the fork and read-only after.
struct LoadedModels {
  std::vector<std::unique_ptr<TorchModel>> models;  // empty with --share_weights=off
  std::vector<std::unique_ptr<Tokenizer>> tokenizers;
  std::map<std::string, ZygoteModel> by_key;  // by ModelSpec::key(): each served version
};

// One step of LoadModels, for the startup timeline: `step` is "load_tokenizer" or "load_model",
// `what` the line to log.
using LoadStep =
    std::function<void(const std::string& step, const ModelSpec& spec, const std::string& what)>;

// Loads every model of `specs`; calls `phase` once per tokenizer and per model loaded (the
// startup timeline). The first error, naming the model, stops it.
absl::StatusOr<LoadedModels> LoadModels(const std::vector<ModelSpec>& specs, bool share_weights,
                                        const LoadStep& phase);

}  // namespace kiln

#endif  // KILN_SERVER_ZYGOTE_MODEL_LOADING_H_
