#include "server/zygote/model_loading.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/clock.h"
#include "common/status_util.h"

namespace kiln {

absl::StatusOr<LoadedModels> LoadModels(const std::vector<ModelSpec>& specs, bool share_weights,
                                        const LoadStep& phase) {
  LoadedModels loaded;
  for (const ModelSpec& spec : specs) {
    ZygoteModel& entry = loaded.by_key[spec.key()];
    entry.spec = &spec;
    if (!spec.tokenizer_path.empty()) {
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(spec.tokenizer_path);
      if (!tokenizer.ok()) {
        return Annotate(tokenizer.status(),
                        absl::StrCat("load ", spec.config.name(), "'s tokenizer"));
      }
      entry.tokenizer = tokenizer->get();
      loaded.tokenizers.push_back(*std::move(tokenizer));
      phase("load_tokenizer", spec,
            absl::StrFormat("loaded %s's tokenizer (%d pieces, %.1f ms)", spec.config.name(),
                            entry.tokenizer->vocab_size(), MillisecondsSince(start)));
    }
    if (!share_weights) continue;
    absl::StatusOr<std::unique_ptr<TorchModel>> model = TorchModel::Load(spec);
    if (!model.ok()) return Annotate(model.status(), absl::StrCat("load ", spec.config.name()));
    const TorchModelLoadStats& stats = (*model)->stats();
    phase("load_model", spec,
          spec.weights_path.empty()
              ? absl::StrFormat(
                    "loaded %s v%d (torchscript %.1f ms; no model.safetensors to map: the weights "
                    "stay on the heap, shared copy-on-write after the fork until written to)",
                    spec.config.name(), spec.version, stats.load_ms)
              : absl::StrFormat("loaded %s v%d (map %.1f ms, %.1f MB; torchscript %.1f ms; rebind "
                                "%.1f ms, %d tensors shared, %d copied)",
                                spec.config.name(), spec.version, stats.map_ms,
                                stats.mapped_bytes / 1e6, stats.load_ms, stats.rebind_ms,
                                stats.tensors_rebound, stats.tensors_copied));
    entry.loaded = model->get();
    loaded.models.push_back(*std::move(model));
  }
  return loaded;
}

}  // namespace kiln
