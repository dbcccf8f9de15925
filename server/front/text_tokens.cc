#include "server/front/text_tokens.h"

#include <utility>

#include "glog/logging.h"
#include "worker/text_batch.h"

namespace kiln {

std::shared_ptr<const Tokenizer> TextTokens::TokenizerOf(const ModelSpec& spec) {
  const std::string key = spec.key();
  {
    absl::MutexLock lock(&mu_);
    for (const Loaded& loaded : by_key_[key]) {
      if (loaded.stamp == spec.stamp) return loaded.tokenizer;
    }
  }
  // Loaded outside the lock: other versions' requests keep counting meanwhile. Two first
  // requests of one version may both load it; the second's copy is dropped.
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(spec.tokenizer_path);
  LOG_IF(WARNING, !tokenizer.ok())
      << key << ": text requests are not batched: the master could not load the tokenizer to "
      << "count their tokens: " << tokenizer.status();
  std::shared_ptr<const Tokenizer> shared;
  if (tokenizer.ok()) shared = *std::move(tokenizer);
  return Keep(spec, std::move(shared));
}

std::shared_ptr<const Tokenizer> TextTokens::Keep(const ModelSpec& spec,
                                                  std::shared_ptr<const Tokenizer> tokenizer) {
  absl::MutexLock lock(&mu_);
  std::vector<Loaded>& kept = by_key_[spec.key()];
  for (const Loaded& loaded : kept) {
    if (loaded.stamp == spec.stamp) return loaded.tokenizer;
  }
  kept.push_back({spec.stamp, tokenizer});
  if (kept.size() > kKeptPerKey) kept.erase(kept.begin());
  return tokenizer;
}

void TextTokens::Adopt(const ModelSpec& spec, const Tokenizer* tokenizer) {
  // Borrowed: a shared_ptr that owns nothing (the master's LoadedModels owns it).
  Keep(spec, std::shared_ptr<const Tokenizer>(std::shared_ptr<const Tokenizer>(), tokenizer));
}

int32_t TextTokens::LongestRow(const ModelSpec& spec, const std::vector<std::string>& texts) {
  if (!spec.config.has_tokenizer() || !spec.config.dynamic_batching().enabled()) return -1;
  const std::shared_ptr<const Tokenizer> tokenizer = TokenizerOf(spec);
  if (tokenizer == nullptr) return -1;
  absl::StatusOr<int32_t> longest = kiln::LongestRow(
      texts, [&tokenizer](absl::string_view text) { return tokenizer->Encode(text); }, spec.config);
  return longest.ok() ? *longest : -1;
}

}  // namespace kiln
