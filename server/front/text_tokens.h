// Counting a text request's tokens in the master, for the dynamic batcher (docs/batching.md,
// "Text"): texts share a call only when they pad to the same warmed sequence length, and that
// length follows from the longest row's tokens, which only tokenizing tells. The worker still
// tokenizes the call itself (its ids go to the model); the master counts and throws the ids away.
#ifndef KILN_SERVER_FRONT_TEXT_TOKENS_H_
#define KILN_SERVER_FRONT_TEXT_TOKENS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/model_config_loader.h"
#include "worker/tokenizer.h"

namespace kiln {

// Ownership: holds one tokenizer per served text version that batches (by ModelSpec::key() and
// stamp: a reload's staged version beside the live one it replaces), at most kKeptPerKey of them
// per key (the oldest dropped): the master's own for the versions it loaded before the fork
// (Adopt; borrowed), else loaded from the spec's tokenizer file on the version's first request
// (the readiness check's, before the port opens; owned). Thread-safety: safe from any thread; mu_
// guards the map, and a loaded Tokenizer is const and safe to share (its Encode is).
class TextTokens {
 public:
  static constexpr size_t kKeptPerKey = 2;

  // Tokens in the longest of `texts`, once truncated to the tokenizer's max_length, as the worker
  // will count them (LongestRow, worker/text_batch.h). -1 when `spec` does not batch text (no
  // tokenizer, or no dynamic_batching) or when counting fails: its tokenizer file cannot be
  // loaded now (logged once per version), or a row does not tokenize. Such a request goes to a
  // call of its own, and the worker reports any error as before.
  int32_t LongestRow(const ModelSpec& spec, const std::vector<std::string>& texts);

  // Counts `spec`'s text with `tokenizer`, which the master already loaded (LoadModels) and which
  // must outlive this object, instead of loading the file again.
  void Adopt(const ModelSpec& spec, const Tokenizer* tokenizer);

 private:
  // Keeps `tokenizer` (null: it could not be loaded) for `spec`, unless one is kept already;
  // returns the one kept.
  std::shared_ptr<const Tokenizer> Keep(const ModelSpec& spec,
                                        std::shared_ptr<const Tokenizer> tokenizer)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The tokenizer of `spec`, loading it on first use; null when it cannot be loaded.
  std::shared_ptr<const Tokenizer> TokenizerOf(const ModelSpec& spec) ABSL_LOCKS_EXCLUDED(mu_);

  struct Loaded {
    std::string stamp;
    std::shared_ptr<const Tokenizer> tokenizer;  // null: loading failed (not retried)
  };
  absl::Mutex mu_;
  std::map<std::string, std::vector<Loaded>> by_key_ ABSL_GUARDED_BY(mu_);  // newest last
};

}  // namespace kiln

#endif  // KILN_SERVER_FRONT_TEXT_TOKENS_H_
