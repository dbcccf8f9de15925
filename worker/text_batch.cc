#include "worker/text_batch.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/model_config_loader.h"
#include "common/status_util.h"

namespace kiln {
namespace {

// Writes `value` as element `i` of `tensor` (INT64 or INT32).
void Put(Tensor& tensor, size_t i, int64_t value) {
  if (tensor.dtype == DType::kInt64) {
    std::memcpy(tensor.bytes.data() + i * sizeof(int64_t), &value, sizeof(int64_t));
  } else {
    const int32_t narrow = static_cast<int32_t>(value);
    std::memcpy(tensor.bytes.data() + i * sizeof(int32_t), &narrow, sizeof(int32_t));
  }
}

}  // namespace

absl::StatusOr<int32_t> LongestRow(const std::vector<std::string>& texts, const EncodeFn& encode,
                                   const ModelConfig& config) {
  int32_t longest = 0;
  for (size_t r = 0; r < texts.size(); ++r) {
    absl::StatusOr<std::vector<int32_t>> ids = encode(texts[r]);
    if (!ids.ok()) return Annotate(ids.status(), absl::StrCat("tokenizing text row ", r));
    longest = std::max(
        longest, std::min(static_cast<int32_t>(ids->size()), config.tokenizer().max_length()));
  }
  return longest;
}

absl::StatusOr<TextBatch> TokenizeBatch(const std::vector<std::string>& texts,
                                        const EncodeFn& encode, const ModelConfig& config,
                                        const std::vector<int32_t>& buckets) {
  const TokenizerConfig& tokenizer = config.tokenizer();
  const TensorConfig* ids_input = FindInput(config, tokenizer.ids_input());
  const TensorConfig* mask_input = FindInput(config, tokenizer.mask_input());
  if (ids_input == nullptr || mask_input == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(config.name(), ": the tokenizer's inputs '", tokenizer.ids_input(), "' and '",
                     tokenizer.mask_input(), "' are not both inputs of the model"));
  }
  if (texts.empty()) return absl::InvalidArgumentError("no texts to tokenize");
  if (config.max_batch_size() == 0 && texts.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(config.name(), " has no batch dimension: send one text, not ", texts.size()));
  }

  std::vector<std::vector<int32_t>> rows;
  rows.reserve(texts.size());
  TextBatch batch;
  for (size_t r = 0; r < texts.size(); ++r) {
    absl::StatusOr<std::vector<int32_t>> ids = encode(texts[r]);
    if (!ids.ok()) return Annotate(ids.status(), absl::StrCat("tokenizing text row ", r));
    if (static_cast<int32_t>(ids->size()) > tokenizer.max_length()) {
      ids->resize(tokenizer.max_length());
    }
    batch.longest = std::max(batch.longest, static_cast<int32_t>(ids->size()));
    rows.push_back(*std::move(ids));
  }
  batch.length = PaddedLength(batch.longest, buckets);

  const auto make = [&](const TensorConfig& input) {
    Tensor tensor;
    tensor.name = input.name();
    tensor.dtype = input.data_type() == TYPE_INT32 ? DType::kInt32 : DType::kInt64;
    if (config.max_batch_size() > 0) tensor.shape.push_back(static_cast<int64_t>(rows.size()));
    tensor.shape.push_back(batch.length);
    tensor.bytes.assign(rows.size() * batch.length * DTypeSize(tensor.dtype), 0);
    return tensor;
  };
  Tensor ids = make(*ids_input);
  Tensor mask = make(*mask_input);
  for (size_t r = 0; r < rows.size(); ++r) {
    for (int32_t t = 0; t < batch.length; ++t) {
      const size_t i = r * batch.length + t;
      const bool token = t < static_cast<int32_t>(rows[r].size());
      Put(ids, i, token ? rows[r][t] : tokenizer.pad_id());
      Put(mask, i, token ? 1 : 0);
    }
  }
  for (const TensorConfig& input : config.input()) {
    batch.inputs.push_back(std::move(input.name() == ids.name ? ids : mask));
  }
  return batch;
}

}  // namespace kiln
