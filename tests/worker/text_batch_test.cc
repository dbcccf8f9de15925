// TokenizeBatch and PaddedLength with a fake tokenizer (one id per whitespace-separated number),
// and the deterministic SampleText they are warmed on.
#include "worker/text_batch.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/sample_text.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;

// The fake tokenizer: "5 6 7" -> {5, 6, 7}. A word that is not a number is a DataLoss error (a
// code no other path returns, so a test can see it passed through as is).
absl::StatusOr<std::vector<int32_t>> NumberTokens(absl::string_view text) {
  std::vector<int32_t> ids;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(word, &id)) {
      return absl::DataLossError(absl::StrCat("cannot encode '", word, "'"));
    }
    ids.push_back(id);
  }
  return ids;
}

constexpr int32_t kPad = 99;

// A text model: inputs "input_ids" then "attention_mask" (INT64 [-1] unless told otherwise),
// max_length 6, pad_id 99.
ModelConfig TextModel(int32_t max_batch_size, DataType ids_type = TYPE_INT64,
                      DataType mask_type = TYPE_INT64, bool mask_first = false) {
  ModelConfig config;
  config.set_name("textcls");
  config.set_max_batch_size(max_batch_size);
  TokenizerConfig& tokenizer = *config.mutable_tokenizer();
  tokenizer.set_max_length(6);
  tokenizer.set_pad_id(kPad);
  tokenizer.set_text_input("text");
  tokenizer.set_ids_input("input_ids");
  tokenizer.set_mask_input("attention_mask");
  auto add = [&config](const std::string& name, DataType type) {
    TensorConfig& input = *config.add_input();
    input.set_name(name);
    input.set_data_type(type);
    input.add_dims(-1);
  };
  if (mask_first) add("attention_mask", mask_type);
  add("input_ids", ids_type);
  if (!mask_first) add("attention_mask", mask_type);
  return config;
}

// The elements of an INT64 or INT32 tensor, widened.
std::vector<int64_t> Values(const Tensor& tensor) {
  std::vector<int64_t> values;
  if (tensor.dtype == DType::kInt64) {
    REQUIRE(tensor.bytes.size() % sizeof(int64_t) == 0);
    values.resize(tensor.bytes.size() / sizeof(int64_t));
    std::memcpy(values.data(), tensor.bytes.data(), tensor.bytes.size());
  } else {
    REQUIRE(tensor.dtype == DType::kInt32);
    REQUIRE(tensor.bytes.size() % sizeof(int32_t) == 0);
    std::vector<int32_t> narrow(tensor.bytes.size() / sizeof(int32_t));
    std::memcpy(narrow.data(), tensor.bytes.data(), tensor.bytes.size());
    values.assign(narrow.begin(), narrow.end());
  }
  return values;
}

// --- LongestRow ------------------------------------------------------------------------------

TEST_CASE("LongestRow counts the longest row's tokens, truncated to max_length", "[text_batch]") {
  const ModelConfig config = TextModel(8);  // max_length 6
  absl::StatusOr<int32_t> longest = LongestRow({"1 2", "3 4 5", ""}, NumberTokens, config);
  REQUIRE(longest.ok());
  CHECK(*longest == 3);
  CHECK(*LongestRow({"1 2 3 4 5 6 7 8 9"}, NumberTokens, config) == 6);
  CHECK(*LongestRow({""}, NumberTokens, config) == 0);
  // What TokenizeBatch pads from.
  absl::StatusOr<TextBatch> batch = TokenizeBatch({"1 2", "3 4 5"}, NumberTokens, config, {4});
  REQUIRE(batch.ok());
  CHECK(batch->longest == *LongestRow({"1 2", "3 4 5"}, NumberTokens, config));
  // A tokenizer error comes back as is, with its row.
  absl::StatusOr<int32_t> bad = LongestRow({"1", "x"}, NumberTokens, config);
  CHECK(bad.status().code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(bad.status().message()), Contains("row 1"));
}

// --- PaddedLength ----------------------------------------------------------------------------

TEST_CASE("PaddedLength picks the smallest bucket that holds the longest row", "[text_batch]") {
  const std::vector<int32_t> buckets = {32, 8, 16};  // unordered on purpose
  CHECK(PaddedLength(1, buckets) == 8);
  CHECK(PaddedLength(5, buckets) == 8);
  CHECK(PaddedLength(8, buckets) == 8);  // an exact fit is not padded further
  CHECK(PaddedLength(9, buckets) == 16);
  CHECK(PaddedLength(17, buckets) == 32);
  CHECK(PaddedLength(32, buckets) == 32);
}

TEST_CASE("PaddedLength without a bucket that fits is the longest row itself, at least 1",
          "[text_batch]") {
  CHECK(PaddedLength(33, {32, 8, 16}) == 33);
  CHECK(PaddedLength(7, {}) == 7);
  CHECK(PaddedLength(0, {}) == 1);
  CHECK(PaddedLength(0, {0}) == 1);     // a 0 bucket is no bucket
  CHECK(PaddedLength(0, {0, 4}) == 4);  // empty rows still go to the smallest real bucket
}

// --- TokenizeBatch ---------------------------------------------------------------------------

TEST_CASE("a batch is tokenized, padded with pad_id to a bucket and masked 1/0", "[text_batch]") {
  absl::StatusOr<TextBatch> batch =
      TokenizeBatch({"5 6 7", "8"}, NumberTokens, TextModel(4), {16, 4});
  REQUIRE(batch.ok());
  CHECK(batch->longest == 3);
  CHECK(batch->length == 4);
  REQUIRE(batch->inputs.size() == 2);
  const Tensor& ids = batch->inputs[0];
  const Tensor& mask = batch->inputs[1];
  CHECK(ids.name == "input_ids");
  CHECK(mask.name == "attention_mask");
  CHECK(ids.dtype == DType::kInt64);
  CHECK(mask.dtype == DType::kInt64);
  CHECK(ids.shape == std::vector<int64_t>{2, 4});
  CHECK(mask.shape == std::vector<int64_t>{2, 4});
  CHECK(Values(ids) == std::vector<int64_t>{5, 6, 7, kPad, 8, kPad, kPad, kPad});
  CHECK(Values(mask) == std::vector<int64_t>{1, 1, 1, 0, 1, 0, 0, 0});
}

TEST_CASE("rows are truncated to tokenizer.max_length before padding", "[text_batch]") {
  // max_length is 6: the first row loses its last two ids; no bucket, so no padding beyond 6.
  absl::StatusOr<TextBatch> batch =
      TokenizeBatch({"1 2 3 4 5 6 7 8", "9 10"}, NumberTokens, TextModel(4), {});
  REQUIRE(batch.ok());
  CHECK(batch->longest == 6);
  CHECK(batch->length == 6);
  REQUIRE(batch->inputs.size() == 2);
  CHECK(batch->inputs[0].shape == std::vector<int64_t>{2, 6});
  CHECK(Values(batch->inputs[0]) ==
        std::vector<int64_t>{1, 2, 3, 4, 5, 6, 9, 10, kPad, kPad, kPad, kPad});
  CHECK(Values(batch->inputs[1]) == std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0});
}

TEST_CASE("an empty text is one padded, masked-out position", "[text_batch]") {
  absl::StatusOr<TextBatch> batch = TokenizeBatch({""}, NumberTokens, TextModel(4), {});
  REQUIRE(batch.ok());
  CHECK(batch->longest == 0);
  CHECK(batch->length == 1);
  REQUIRE(batch->inputs.size() == 2);
  CHECK(batch->inputs[0].shape == std::vector<int64_t>{1, 1});
  CHECK(Values(batch->inputs[0]) == std::vector<int64_t>{kPad});
  CHECK(Values(batch->inputs[1]) == std::vector<int64_t>{0});
}

TEST_CASE("ids and mask take the dtype of their config inputs", "[text_batch]") {
  SECTION("both INT32") {
    absl::StatusOr<TextBatch> batch =
        TokenizeBatch({"5 6", "-3"}, NumberTokens, TextModel(4, TYPE_INT32, TYPE_INT32), {3});
    REQUIRE(batch.ok());
    REQUIRE(batch->inputs.size() == 2);
    for (const Tensor& tensor : batch->inputs) {
      CHECK(tensor.dtype == DType::kInt32);
      CHECK(tensor.bytes.size() == 2 * 3 * sizeof(int32_t));
    }
    CHECK(Values(batch->inputs[0]) == std::vector<int64_t>{5, 6, kPad, -3, kPad, kPad});
    CHECK(Values(batch->inputs[1]) == std::vector<int64_t>{1, 1, 0, 1, 0, 0});
  }
  SECTION("INT32 ids, INT64 mask") {
    absl::StatusOr<TextBatch> batch =
        TokenizeBatch({"5 6"}, NumberTokens, TextModel(4, TYPE_INT32, TYPE_INT64), {});
    REQUIRE(batch.ok());
    REQUIRE(batch->inputs.size() == 2);
    CHECK(batch->inputs[0].dtype == DType::kInt32);
    CHECK(batch->inputs[0].bytes.size() == 2 * sizeof(int32_t));
    CHECK(batch->inputs[1].dtype == DType::kInt64);
    CHECK(batch->inputs[1].bytes.size() == 2 * sizeof(int64_t));
    CHECK(Values(batch->inputs[0]) == std::vector<int64_t>{5, 6});
    CHECK(Values(batch->inputs[1]) == std::vector<int64_t>{1, 1});
  }
}

TEST_CASE("the inputs come in the config's order, even with the mask first", "[text_batch]") {
  absl::StatusOr<TextBatch> batch = TokenizeBatch(
      {"5 6 7"}, NumberTokens, TextModel(4, TYPE_INT64, TYPE_INT32, /*mask_first=*/true), {4});
  REQUIRE(batch.ok());
  REQUIRE(batch->inputs.size() == 2);
  CHECK(batch->inputs[0].name == "attention_mask");
  CHECK(batch->inputs[0].dtype == DType::kInt32);
  CHECK(Values(batch->inputs[0]) == std::vector<int64_t>{1, 1, 1, 0});
  CHECK(batch->inputs[1].name == "input_ids");
  CHECK(batch->inputs[1].dtype == DType::kInt64);
  CHECK(Values(batch->inputs[1]) == std::vector<int64_t>{5, 6, 7, kPad});
}

TEST_CASE("a model without a batch dim takes exactly one text, shaped [length]", "[text_batch]") {
  const ModelConfig config = TextModel(/*max_batch_size=*/0);
  absl::StatusOr<TextBatch> one = TokenizeBatch({"5 6"}, NumberTokens, config, {4});
  REQUIRE(one.ok());
  REQUIRE(one->inputs.size() == 2);
  CHECK(one->inputs[0].shape == std::vector<int64_t>{4});
  CHECK(one->inputs[1].shape == std::vector<int64_t>{4});
  CHECK(Values(one->inputs[0]) == std::vector<int64_t>{5, 6, kPad, kPad});
  CHECK(Values(one->inputs[1]) == std::vector<int64_t>{1, 1, 0, 0});

  absl::StatusOr<TextBatch> two = TokenizeBatch({"5", "6"}, NumberTokens, config, {4});
  REQUIRE_FALSE(two.ok());
  CHECK(two.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(two.status().message()), Contains("textcls has no batch dimension"));
  CHECK_THAT(std::string(two.status().message()), Contains("not 2"));
}

TEST_CASE("a tokenizer error is returned with its code and the row it happened on",
          "[text_batch]") {
  int calls = 0;
  const EncodeFn counting = [&calls](absl::string_view text) {
    ++calls;
    return NumberTokens(text);
  };
  absl::StatusOr<TextBatch> batch =
      TokenizeBatch({"1 2", "3", "4 oops", "5"}, counting, TextModel(4), {});
  REQUIRE_FALSE(batch.ok());
  CHECK(batch.status().code() == absl::StatusCode::kDataLoss);
  CHECK(std::string(batch.status().message()) == "tokenizing text row 2: cannot encode 'oops'");
  CHECK(calls == 3);  // stops at the failing row
}

TEST_CASE("no texts, or a config without the tokenizer's inputs, is an error", "[text_batch]") {
  absl::StatusOr<TextBatch> none = TokenizeBatch({}, NumberTokens, TextModel(4), {});
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().code() == absl::StatusCode::kInvalidArgument);

  ModelConfig config = TextModel(4);
  config.mutable_tokenizer()->set_mask_input("mask");  // not an input of the model
  absl::StatusOr<TextBatch> wrong = TokenizeBatch({"1"}, NumberTokens, config, {});
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(wrong.status().message()), Contains("'mask'"));
}

// --- SampleText ------------------------------------------------------------------------------

TEST_CASE("SampleText has exactly the words asked for and is the same on every call",
          "[text_batch][sample_text]") {
  CHECK(SampleText(0).empty());
  CHECK(SampleText(1) == "The");
  CHECK(SampleText(5) == "The quick brown fox jumps");
  for (int32_t words : {1, 2, 16, 47, 48, 49, 128, 300}) {
    const std::string text = SampleText(words);
    INFO("words " << words << ": " << text);
    const std::vector<std::string> split = absl::StrSplit(text, ' ');
    CHECK(static_cast<int32_t>(split.size()) == words);
    CHECK(std::none_of(split.begin(), split.end(), [](const std::string& w) { return w.empty(); }));
    CHECK(SampleText(words) == text);
  }
  // Past the passage it starts over: word 48 (0-based) is the first word again.
  const std::vector<std::string> long_text = absl::StrSplit(SampleText(50), ' ');
  CHECK(long_text[48] == "The");
  CHECK(long_text[49] == "quick");
}

}  // namespace
}  // namespace kiln
