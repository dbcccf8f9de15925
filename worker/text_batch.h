// Turning a batch of texts into a text model's inputs (docs/ARCHITECTURE.md, "A request's path"):
// token ids truncated to the tokenizer's max_length, every row right-padded with pad_id up to the
// nearest warmed sequence length, and an attention mask of 1 for a token and 0 for padding.
//
// Pure functions over their arguments (the tokenizer is passed in as a function, so tests can
// use a fake): safe from any thread.
#ifndef KILN_WORKER_TEXT_BATCH_H_
#define KILN_WORKER_TEXT_BATCH_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/sample_text.h"
#include "common/shape.h"
#include "common/tensor.h"
#include "proto/model_config.pb.h"

namespace kiln {

// A tokenizer: all the ids of one text.
using EncodeFn = std::function<absl::StatusOr<std::vector<int32_t>>(absl::string_view)>;

struct TextBatch {
  std::vector<Tensor> inputs;  // the model's inputs in the config's order: ids and mask
  int32_t longest = 0;         // tokens in the longest row, after truncation
  int32_t length = 0;          // the padded sequence length every row has
};

// Tokens in the longest of `texts` once truncated to the tokenizer's max_length: the length
// TokenizeBatch pads from. The master counts it so that the dynamic batcher puts texts that pad
// to the same warmed length in one call (docs/batching.md). A tokenizer error is returned as is,
// with its row.
absl::StatusOr<int32_t> LongestRow(const std::vector<std::string>& texts, const EncodeFn& encode,
                                   const ModelConfig& config);

// Tokenizes `texts` (one row each) for `config` (which must have a tokenizer) and pads them to
// PaddedLength(longest, buckets). The ids and mask get the dtype of their config inputs
// (TYPE_INT64 or TYPE_INT32); with max_batch_size 0 (no batch dim) exactly one text is allowed.
// A tokenizer error is returned as is, with the row it happened on.
absl::StatusOr<TextBatch> TokenizeBatch(const std::vector<std::string>& texts,
                                        const EncodeFn& encode, const ModelConfig& config,
                                        const std::vector<int32_t>& buckets);

}  // namespace kiln

#endif  // KILN_WORKER_TEXT_BATCH_H_
