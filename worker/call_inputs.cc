#include "worker/call_inputs.h"

#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/arena_tensors.h"
#include "common/clock.h"
#include "common/dtype.h"
#include "common/status_macros.h"

namespace kiln {
namespace {

// Whether `inputs` are what the model takes: the config's inputs in its order (an optional one
// may be left out, but not all), each with the config's dtype and dims (a -1 dim >= 1), one batch
// in [1, max_batch_size] for all, and bytes that hold each shape. The master sends only such calls
// (it decoded and checked the request), so anything else is a corrupt frame: Internal, naming the
// input and what is wrong. Planning, padding and slicing a call into passes rely on it.
absl::Status CheckInputs(const ModelConfig& config, const std::vector<TensorView>& inputs) {
  const auto bad = [&config](const auto&... what) {
    return absl::InternalError(absl::StrCat("bad call for ", config.name(), ": ", what...));
  };
  if (inputs.empty()) return bad("no inputs");
  const InputMatch match = MatchInputs(config, inputs);
  if (!match.missing.empty()) {
    return bad("input '", match.missing, "' is missing (or out of the config's order)");
  }
  if (!match.unexpected.empty()) {
    return bad(inputs.size(), " inputs, of which '", match.unexpected,
               "' is none of the model's (or out of the config's order)");
  }
  const bool batched = config.max_batch_size() > 0;
  const size_t offset = batched ? 1 : 0;
  for (int c = 0; c < config.input_size(); ++c) {
    if (match.given_as[c] < 0) continue;  // an optional input left out
    const TensorConfig& tensor = config.input(c);
    const TensorView& input = inputs[match.given_as[c]];
    const std::optional<DType> dtype = DTypeFromDataType(tensor.data_type());
    if (dtype != input.dtype) {
      return bad("input '", input.name, "' is ", DTypeName(input.dtype), "; the model's is ",
                 DataType_Name(tensor.data_type()));
    }
    const std::string shape = ShapeString(input.shape);
    if (input.shape.size() != tensor.dims().size() + offset) {
      return bad("input '", input.name, "' has shape ", shape, ", not the model's rank");
    }
    if (batched && (input.shape[0] < 1 || input.shape[0] > config.max_batch_size() ||
                    input.shape[0] != inputs[0].shape[0])) {
      return bad("input '", input.name, "' has shape ", shape, ": its batch is not in [1, ",
                 config.max_batch_size(), "] or differs from the first input's");
    }
    for (int d = 0; d < tensor.dims_size(); ++d) {
      const int64_t dim = input.shape[d + offset];
      if (tensor.dims(d) == -1 ? dim < 1 : dim != tensor.dims(d)) {
        return bad("input '", input.name, "' has shape ", shape, ", not the model's dims");
      }
    }
    if (ByteSize(input.dtype, input.shape) != input.nbytes) {
      return bad("input '", input.name, "': ", input.nbytes, " bytes do not hold ",
                 DTypeName(input.dtype), " ", shape);
    }
  }
  return absl::OkStatus();
}

// The inputs of `call`: views into the arena, or for a text call its texts tokenized here and
// padded to the warmed sequence bucket (noted in `result`).
absl::Status ReadInputs(const ModelConfig& config, const EncodeFn& tokenize,
                        const ShapeGuard& guard, const internal::InferCall& call,
                        const SharedArena& arena, CallInputs& inputs,
                        internal::InferResult& result) {
  if (!call.has_text()) {
    ASSIGN_OR_RETURN(inputs.views, ViewsInArena(call.inputs(), arena));
    return absl::OkStatus();
  }
  if (tokenize == nullptr) {
    return absl::InvalidArgumentError(config.name() + " has no tokenizer for text");
  }
  ASSIGN_OR_RETURN(const std::vector<std::string> texts, TextInArena(call.text(), arena));
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<TextBatch> batch = TokenizeBatch(texts, tokenize, config, guard.SequenceBuckets());
  result.set_tokenize_ms(MillisecondsSince(start));
  ASSIGN_OR_RETURN(inputs.text, std::move(batch));
  for (const Tensor& input : inputs.text.inputs) inputs.views.push_back(input.view());
  result.set_unpadded_length(inputs.text.longest);
  return absl::OkStatus();
}

}  // namespace

absl::Status PrepareCall(const ModelConfig& config, const EncodeFn& tokenize,
                         const ShapeGuard& guard, const internal::InferCall& call,
                         const SharedArena& arena, CallInputs& inputs,
                         internal::InferResult& result) {
  RETURN_IF_ERROR(ReadInputs(config, tokenize, guard, call, arena, inputs, result));
  RETURN_IF_ERROR(CheckInputs(config, inputs.views));
  inputs.request = RequestShape(config, inputs.views);
  ASSIGN_OR_RETURN(inputs.plan, guard.Plan(inputs.request));
  if (inputs.plan.padded_rows > 0) {
    for (const TensorView& input : inputs.views) {
      inputs.padded.push_back(PadRows(input, inputs.plan.pass.batch_size));
    }
    inputs.views.clear();
    for (const Tensor& input : inputs.padded) inputs.views.push_back(input.view());
  }
  return absl::OkStatus();
}

}  // namespace kiln
