// libFuzzer target for the Open Inference Protocol request decoding (server/codec/infer_codec.h):
// the first byte picks one of a few model configs, the rest is a ModelInferRequest in protobuf's
// binary form, as a client sends it. Whatever the bytes, DecodeInferRequest must return; an error
// is InvalidArgument with a message; an accepted request keeps every promise of DecodedRequest,
// and its inputs survive the master's trip through a worker's arena (WriteToArena or
// WriteTextToArena, read back with ViewsInArena or TextInArena as the worker does).
// Run with scripts/fuzz.sh.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/statusor.h"
#include "common/arena_tensors.h"
#include "common/bytes_form.h"
#include "common/dtype.h"
#include "common/shape.h"
#include "common/shared_arena.h"
#include "common/tensor.h"
#include "google/protobuf/text_format.h"
#include "proto/grpc_service.pb.h"
#include "proto/model_config.pb.h"
#include "server/codec/infer_codec.h"
#include "tests/fuzz/fuzz_expect.h"

namespace kiln {
namespace {

using fuzz::Expect;
using inference::InferTensorContents;
using inference::ModelInferRequest;

// Configs as the loader leaves them (only what decoding reads), picked by the first byte.
constexpr const char* kConfigs[] = {
    // An mlp: FP32 rows of 16, two outputs.
    R"pb(name: "mlp"
         max_batch_size: 8
         input { name: "x" data_type: TYPE_FP32 dims: 16 }
         output { name: "y" data_type: TYPE_FP32 dims: 4 }
         output { name: "z" data_type: TYPE_INT64 dims: 1 })pb",
    // A text model: its BYTES text input, or its token inputs of variable length.
    R"pb(name: "text"
         max_batch_size: 4
         input { name: "input_ids" data_type: TYPE_INT64 dims: -1 }
         input { name: "attention_mask" data_type: TYPE_INT64 dims: -1 }
         output { name: "logits" data_type: TYPE_FP32 dims: 2 }
         tokenizer {
           model_file: "tokenizer.model"
           text_input: "text"
           ids_input: "input_ids"
           mask_input: "attention_mask"
           max_length: 32
         })pb",
    // No batch dim; a variable dim, BOOL and FP16 (raw only).
    R"pb(name: "nobatch"
         max_batch_size: 0
         input { name: "a" data_type: TYPE_INT32 dims: 2 dims: -1 }
         input { name: "b" data_type: TYPE_BOOL dims: 3 }
         input { name: "c" data_type: TYPE_FP16 dims: 2 optional: true }
         output { name: "o" data_type: TYPE_FP64 dims: 1 })pb",
    // Every numeric type, so that every typed-contents conversion runs.
    R"pb(name: "types"
         max_batch_size: 2
         input { name: "t_bool" data_type: TYPE_BOOL dims: 2 }
         input { name: "t_u8" data_type: TYPE_UINT8 dims: 2 }
         input { name: "t_i8" data_type: TYPE_INT8 dims: 2 }
         input { name: "t_i16" data_type: TYPE_INT16 dims: 2 }
         input { name: "t_i32" data_type: TYPE_INT32 dims: 2 }
         input { name: "t_i64" data_type: TYPE_INT64 dims: 2 }
         input { name: "t_f16" data_type: TYPE_FP16 dims: 2 }
         input { name: "t_f32" data_type: TYPE_FP32 dims: 2 }
         input { name: "t_f64" data_type: TYPE_FP64 dims: 2 }
         input { name: "t_bf16" data_type: TYPE_BF16 dims: 2 }
         output { name: "o" data_type: TYPE_FP32 dims: 1 })pb",
};
constexpr size_t kConfigCount = sizeof(kConfigs) / sizeof(kConfigs[0]);

ModelConfig ParseConfig(const char* text) {
  ModelConfig config;
  Expect(google::protobuf::TextFormat::ParseFromString(text, &config),
         "the fuzzer's own configs parse");
  return config;
}

const std::vector<ModelConfig>& Configs() {
  static const auto* const configs = [] {
    auto* parsed = new std::vector<ModelConfig>;
    for (const char* text : kConfigs) parsed->push_back(ParseConfig(text));
    return parsed;
  }();
  return *configs;
}

// A worker's arena, as big as the largest request the fuzzer makes needs.
SharedArena& Arena() {
  static SharedArena* const arena = [] {
    absl::StatusOr<std::unique_ptr<SharedArena>> created = SharedArena::Create("fuzz", 4 << 20);
    Expect(created.ok(), "the fuzzer's arena");
    return created->release();
  }();
  return *arena;
}

// Reads every byte, so that ASan sees a view that points outside its memory.
void Touch(const void* data, size_t nbytes) {
  unsigned sum = 0;
  for (size_t i = 0; i < nbytes; ++i) sum += static_cast<const uint8_t*>(data)[i];
  volatile unsigned sink = sum;
  (void)sink;
}

// The values of a typed field read back from `owned` as Out equal the field's values.
template <typename Out, typename Field>
void ExpectValues(const Field& values, const std::vector<uint8_t>& owned) {
  Expect(owned.size() == static_cast<size_t>(values.size()) * sizeof(Out), "owned byte count");
  for (int i = 0; i < values.size(); ++i) {
    Out value;
    std::memcpy(&value, owned.data() + static_cast<size_t>(i) * sizeof(Out), sizeof(Out));
    if constexpr (std::is_floating_point_v<Out>) {
      Expect(std::memcmp(&value, &values[i], sizeof(Out)) == 0, "typed float values kept");
    } else {
      Expect(static_cast<decltype(values[i] + 0)>(value) == values[i], "typed values kept");
    }
  }
}

void ExpectTypedValues(const InferTensorContents& contents, const DecodedInput& input) {
  switch (input.data_type) {
    case TYPE_BOOL:
      Expect(input.owned.size() == static_cast<size_t>(contents.bool_contents_size()),
             "one byte per BOOL");
      for (int i = 0; i < contents.bool_contents_size(); ++i) {
        Expect(input.owned[i] == (contents.bool_contents(i) ? 1 : 0), "BOOL as 0 or 1");
      }
      return;
    case TYPE_INT8:
      return ExpectValues<int8_t>(contents.int_contents(), input.owned);
    case TYPE_INT16:
      return ExpectValues<int16_t>(contents.int_contents(), input.owned);
    case TYPE_INT32:
      return ExpectValues<int32_t>(contents.int_contents(), input.owned);
    case TYPE_INT64:
      return ExpectValues<int64_t>(contents.int64_contents(), input.owned);
    case TYPE_UINT8:
      return ExpectValues<uint8_t>(contents.uint_contents(), input.owned);
    case TYPE_FP32:
      return ExpectValues<float>(contents.fp32_contents(), input.owned);
    case TYPE_FP64:
      return ExpectValues<double>(contents.fp64_contents(), input.owned);
    default:
      Expect(false, "typed contents only for types that have a field");
  }
}

// The request input called `name` (names are unique in an accepted request).
int RequestIndex(const ModelInferRequest& request, const std::string& name) {
  int found = -1;
  for (int r = 0; r < request.inputs_size(); ++r) {
    if (request.inputs(r).name() == name) {
      Expect(found < 0, "each input given once");
      found = r;
    }
  }
  Expect(found >= 0, "a decoded input comes from the request");
  return found;
}

// Checks one decoded input against the config tensor it stands for and the request it came from.
void CheckInput(const ModelInferRequest& request, const ModelConfig& config,
                const TensorConfig& tensor, const DecodedInput& input, int64_t batch_size) {
  Expect(input.view.name == tensor.name(), "inputs in the config's order, named after it");
  Expect(input.data_type == tensor.data_type(), "the config's data type");
  const bool batched = config.max_batch_size() > 0;
  const std::vector<int64_t>& shape = input.view.shape;
  Expect(shape.size() == static_cast<size_t>(tensor.dims_size()) + (batched ? 1 : 0), "rank");
  if (batched) {
    Expect(shape[0] >= 1 && shape[0] <= config.max_batch_size(), "batch in [1, max_batch_size]");
    Expect(shape[0] == batch_size, "every input has the request's batch");
  }
  for (int d = 0; d < tensor.dims_size(); ++d) {
    const int64_t dim = shape[d + (batched ? 1 : 0)];
    Expect(tensor.dims(d) == -1 ? dim >= 1 : dim == tensor.dims(d), "dims match the config");
  }
  const std::optional<int64_t> elements = NumElements(shape);
  Expect(elements.has_value(), "an element count");

  const int r = RequestIndex(request, tensor.name());
  const bool raw = !request.raw_input_contents().empty();
  if (input.data_type == TYPE_BYTES) {
    Expect(input.strings.size() == static_cast<size_t>(*elements), "one string per element");
    Expect(input.view.data == nullptr && input.view.nbytes == 0, "a BYTES view stays empty");
    if (raw) {
      const std::string& bytes = request.raw_input_contents(r);
      Expect(BytesFormSize(input.strings) == bytes.size(), "the BYTES form's size");
      std::string again(bytes.size(), '\0');
      WriteBytesForm(input.strings, reinterpret_cast<uint8_t*>(again.data()));
      Expect(again == bytes, "the strings are the BYTES form's");
    } else {
      const auto& contents = request.inputs(r).contents().bytes_contents();
      Expect(
          std::equal(input.strings.begin(), input.strings.end(), contents.begin(), contents.end()),
          "the strings are bytes_contents");
    }
    return;
  }
  const std::optional<DType> dtype = DTypeFromDataType(tensor.data_type());
  Expect(dtype.has_value() && input.view.dtype == *dtype, "the view's dtype");
  Expect(input.view.nbytes == static_cast<size_t>(*elements) * DTypeSize(*dtype),
         "bytes hold the shape x dtype");
  if (raw) {
    const std::string& bytes = request.raw_input_contents(r);
    Expect(input.view.data == bytes.data() && input.view.nbytes == bytes.size(),
           "a raw view is the request's bytes");
  } else {
    Expect(input.view.data == input.owned.data() && input.view.nbytes == input.owned.size(),
           "a typed view is its own bytes");
    ExpectTypedValues(request.inputs(r).contents(), input);
  }
  Touch(input.view.data, input.view.nbytes);
}

// What the master does next: writes the inputs into a worker's arena, where the worker must read
// back what was written.
void CheckArenaTrip(const ModelConfig& config, const DecodedRequest& decoded) {
  SharedArena& arena = Arena();
  if (decoded.text) {
    internal::TensorRef ref;
    absl::StatusOr<uint64_t> end =
        WriteTextToArena(decoded.inputs[0].view.name, decoded.inputs[0].strings, 0, arena, ref);
    if (!end.ok()) {
      fuzz::ExpectError(end.status(), absl::StatusCode::kResourceExhausted, "text too large");
      return;
    }
    absl::StatusOr<std::vector<std::string>> back = TextInArena(ref, arena);
    Expect(back.ok() && *back == decoded.inputs[0].strings, "text read back from the arena");
    return;
  }
  std::vector<TensorView> views;
  for (const DecodedInput& input : decoded.inputs) views.push_back(input.view);
  TensorRefs refs;
  absl::StatusOr<uint64_t> end = WriteToArena(views, 0, arena, refs);
  if (!end.ok()) {
    fuzz::ExpectError(end.status(), absl::StatusCode::kResourceExhausted, "inputs too large");
    return;
  }
  absl::StatusOr<std::vector<TensorView>> back = ViewsInArena(refs, arena);
  Expect(back.ok() && back->size() == views.size(), "views read back from the arena");
  for (size_t i = 0; i < views.size(); ++i) {
    const TensorView& view = (*back)[i];
    Expect(view.name == views[i].name && view.dtype == views[i].dtype &&
               view.shape == views[i].shape && view.nbytes == views[i].nbytes,
           "an arena view describes the input");
    Expect(view.nbytes == 0 || std::memcmp(view.data, views[i].data, view.nbytes) == 0,
           "an arena view holds the input's bytes");
  }
  const Shape shape = RequestShape(config, *back);
  Expect(shape.batch_size == (config.max_batch_size() > 0 ? decoded.batch_size : 1),
         "the worker sees the request's batch");
}

void CheckDecoded(const ModelInferRequest& request, const ModelConfig& config,
                  const DecodedRequest& decoded) {
  if (decoded.text) {
    Expect(config.has_tokenizer() && request.inputs_size() == 1 &&
               request.inputs(0).name() == config.tokenizer().text_input(),
           "text only for the text input alone");
    Expect(decoded.inputs.size() == 1, "one text input");
    CheckInput(request, config, TextInputConfig(config), decoded.inputs[0], decoded.batch_size);
  } else {
    size_t d = 0;  // decoded.inputs[d] stands for the next config input the request gives
    for (const TensorConfig& input : config.input()) {
      const bool given = std::any_of(request.inputs().begin(), request.inputs().end(),
                                     [&input](const ModelInferRequest::InferInputTensor& r) {
                                       return r.name() == input.name();
                                     });
      if (!given) {
        Expect(input.optional(), "only an optional input left out");
        continue;
      }
      Expect(d < decoded.inputs.size(), "every given input decoded");
      CheckInput(request, config, input, decoded.inputs[d++], decoded.batch_size);
    }
    Expect(d == decoded.inputs.size() && d > 0, "the given inputs, at least one, in config order");
    Expect(request.inputs_size() == static_cast<int>(d), "no input left over");
  }
  Expect((config.max_batch_size() > 0) == (decoded.batch_size > 0), "a batch size iff batching");
  Expect(decoded.outputs.size() == static_cast<size_t>(request.outputs_size()),
         "every requested output");
  Expect(decoded.class_counts.size() == decoded.outputs.size(), "a class count per output");
  for (size_t i = 0; i < decoded.outputs.size(); ++i) {
    Expect(decoded.outputs[i] == request.outputs(static_cast<int>(i)).name(), "request order");
    Expect(std::count(decoded.outputs.begin(), decoded.outputs.end(), decoded.outputs[i]) == 1,
           "each output once");
    Expect(std::any_of(
               config.output().begin(), config.output().end(),
               [&](const TensorConfig& output) { return output.name() == decoded.outputs[i]; }),
           "only the model's outputs");
  }
  CheckArenaTrip(config, decoded);
}

}  // namespace
}  // namespace kiln

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kiln;
  if (size < 1) return 0;
  const ModelConfig& config = Configs()[data[0] % kConfigCount];
  inference::ModelInferRequest request;
  if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  fuzz::Note("DecodeInferRequest", decoded.status());
  if (!decoded.ok()) {
    fuzz::ExpectError(decoded.status(), absl::StatusCode::kInvalidArgument,
                      "a bad request is InvalidArgument");
    return 0;
  }
  CheckDecoded(request, config, *decoded);
  return 0;
}
