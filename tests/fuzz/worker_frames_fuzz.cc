// libFuzzer target for the frames and arena references a worker reads: the input is
//   [2 bytes: n, little-endian][n bytes: one datagram as the master sends it][the arena's bytes]
// The datagram goes through a real SOCK_SEQPACKET pair into FrameChannel::Receive as a ToWorker
// frame; an InferCall then goes through PrepareCall (worker/call_inputs.h) against an arena
// holding the rest of the input: its refs read (ViewsInArena, or TextInArena and a fake
// tokenizer for text), planned by a ShapeGuard (with a memory budget that splits large batches),
// padded, and sliced into passes as the forward pass would take them. Whatever the bytes, nothing
// crashes; every error carries the code its function promises; what is accepted is an input the
// model can run (the config's inputs, shapes and dtypes, bytes that hold them, inside memory the
// worker owns). Run with scripts/fuzz.sh.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/frame_channel.h"
#include "common/memory_budget.h"
#include "common/shape.h"
#include "common/shared_arena.h"
#include "common/tensor.h"
#include "google/protobuf/text_format.h"
#include "proto/model_config.pb.h"
#include "proto/worker_frames.pb.h"
#include "tests/fuzz/frame_input.h"
#include "tests/fuzz/fuzz_expect.h"
#include "worker/call_inputs.h"
#include "worker/shape_guard.h"
#include "worker/text_batch.h"

namespace kiln {
namespace {

using fuzz::Expect;

constexpr size_t kArenaBytes = 64 << 10;
constexpr int64_t kMB = 1000 * 1000;

ModelConfig ParseConfig(const char* text) {
  ModelConfig config;
  Expect(google::protobuf::TextFormat::ParseFromString(text, &config),
         "the fuzzer's own configs parse");
  return config;
}

// A model of tensor inputs with a sequence dim, and a text model; each with the guard its worker
// would have after warmup.
struct Fixture {
  fuzz::FrameEnds ends = fuzz::MakeFrameEnds(kArenaBytes);
  ModelConfig tensors = ParseConfig(R"pb(
    name: "seq"
    max_batch_size: 8
    input { name: "x" data_type: TYPE_FP32 dims: -1 dims: 2 }
    input { name: "m" data_type: TYPE_INT64 dims: -1 }
    output { name: "y" data_type: TYPE_FP32 dims: 2 }
    warmup { pad_to_warmed: true })pb");
  ModelConfig text = ParseConfig(R"pb(
    name: "text"
    max_batch_size: 4
    input { name: "input_ids" data_type: TYPE_INT64 dims: -1 }
    input { name: "attention_mask" data_type: TYPE_INT32 dims: -1 }
    output { name: "logits" data_type: TYPE_FP32 dims: 2 }
    warmup { pad_to_warmed: true }
    tokenizer {
      model_file: "tokenizer.model"
      text_input: "text"
      ids_input: "input_ids"
      mask_input: "attention_mask"
      max_length: 16
      pad_id: 0
    })pb");
  // 1 MB a unit (batch x length) over 100 MB, within 124 MB: at most 24 units a pass, so a batch
  // of 8 at length 4 is split.
  ShapeGuard tensors_guard{tensors, {{1, 4}, {2, 4}, {4, 4}, {8, 2}}, TokenMemory(), 124 * kMB};
  ShapeGuard text_guard{text, {{1, 8}, {2, 8}, {4, 16}}, ShapeMemoryModel(100 * kMB), 0};

  static ShapeMemoryModel TokenMemory() {
    ShapeMemoryModel memory(100 * kMB);
    memory.Add(4, 104 * kMB);
    memory.Add(16, 116 * kMB);
    return memory;
  }
};

Fixture& TheFixture() {
  static Fixture* const fixture = new Fixture;
  return *fixture;
}

// A tokenizer: one id per byte; a byte 0xff cannot be encoded.
absl::StatusOr<std::vector<int32_t>> FakeEncode(absl::string_view text) {
  if (text.find('\xff') != absl::string_view::npos) {
    return absl::InvalidArgumentError("byte 0xff cannot be encoded");
  }
  return std::vector<int32_t>(text.begin(), text.end());
}

// Reads every byte, so that a view outside mapped memory crashes here.
void Touch(const void* data, size_t nbytes) {
  unsigned sum = 0;
  for (size_t i = 0; i < nbytes; ++i) sum += static_cast<const uint8_t*>(data)[i];
  volatile unsigned sink = sum;
  (void)sink;
}

bool Within(const void* data, size_t nbytes, const void* begin, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  const auto* b = static_cast<const uint8_t*>(begin);
  return p >= b && nbytes <= size && static_cast<size_t>(p - b) <= size - nbytes;
}

// An accepted call is what the model can run: the config's inputs in its order, with its dtypes
// and dims, one batch within max_batch_size, bytes that hold each shape, in the arena or in
// memory `inputs` owns.
void CheckPrepared(const ModelConfig& config, const SharedArena& arena, const CallInputs& inputs) {
  Expect(inputs.views.size() == static_cast<size_t>(config.input_size()), "every input");
  const bool batched = config.max_batch_size() > 0;
  const int64_t rows = inputs.request.batch_size + inputs.plan.padded_rows;
  for (int c = 0; c < config.input_size(); ++c) {
    const TensorConfig& tensor = config.input(c);
    const TensorView& view = inputs.views[c];
    Expect(view.name == tensor.name(), "inputs in the config's order");
    Expect(DTypeFromDataType(tensor.data_type()) == view.dtype, "the config's dtype");
    Expect(view.shape.size() == static_cast<size_t>(tensor.dims_size()) + (batched ? 1 : 0),
           "the config's rank");
    if (batched) Expect(view.shape[0] == rows, "one batch for all inputs");
    for (int d = 0; d < tensor.dims_size(); ++d) {
      const int64_t dim = view.shape[d + (batched ? 1 : 0)];
      Expect(tensor.dims(d) == -1 ? dim >= 1 : dim == tensor.dims(d), "the config's dims");
    }
    const std::optional<int64_t> elements = NumElements(view.shape);
    Expect(elements.has_value() &&
               static_cast<uint64_t>(*elements) * DTypeSize(view.dtype) == view.nbytes,
           "bytes hold the shape");
    bool owned = Within(view.data, view.nbytes, arena.data(), arena.size());
    for (const auto* tensors : {&inputs.padded, &inputs.text.inputs}) {
      for (const Tensor& t : *tensors)
        owned |= Within(view.data, view.nbytes, t.bytes.data(), t.bytes.size());
    }
    Expect(owned, "a view lies in the arena or in bytes the call owns");
    Touch(view.data, view.nbytes);
  }
  Expect(inputs.request.batch_size >= 1 &&
             inputs.request.batch_size <= std::max(config.max_batch_size(), 1),
         "a batch in [1, max_batch_size]");
  // The passes ForwardInPasses runs: slices of `pass.batch_size` rows inside each input.
  const PassPlan& plan = inputs.plan;
  Expect(plan.passes >= 1 && plan.pass.batch_size >= 1 && plan.padded_rows >= 0, "a plan");
  if (plan.pass.batch_size >= rows) return;
  Expect(static_cast<int64_t>(plan.passes - 1) * plan.pass.batch_size < rows &&
             static_cast<int64_t>(plan.passes) * plan.pass.batch_size >= rows,
         "the passes cover the rows");
  for (int64_t begin = 0; begin < rows; begin += plan.pass.batch_size) {
    const int64_t count = std::min<int64_t>(plan.pass.batch_size, rows - begin);
    for (const TensorView& view : inputs.views) {
      const TensorView slice = SliceRows(view, begin, count);
      Expect(Within(slice.data, slice.nbytes, view.data, view.nbytes), "a pass's slice");
    }
  }
}

void CheckCall(const internal::InferCall& call, const fuzz::FrameInput& input) {
  Fixture& fixture = TheFixture();
  SharedArena& arena = *fixture.ends.arena;
  fuzz::LoadArenaImage(input, arena);

  const bool text = call.has_text();
  const ModelConfig& config = text ? fixture.text : fixture.tensors;
  const ShapeGuard& guard = text ? fixture.text_guard : fixture.tensors_guard;
  CallInputs inputs;
  internal::InferResult result;
  const absl::Status prepared = PrepareCall(config, text ? EncodeFn(FakeEncode) : EncodeFn(), guard,
                                            call, arena, inputs, result);
  fuzz::Note("PrepareCall", prepared);
  if (prepared.ok()) {
    CheckPrepared(config, arena, inputs);
    return;
  }
  const absl::StatusCode code = prepared.code();
  Expect(code == absl::StatusCode::kInternal || code == absl::StatusCode::kInvalidArgument ||
             code == absl::StatusCode::kResourceExhausted,
         "a bad call is Internal, InvalidArgument or ResourceExhausted");
  fuzz::ExpectError(prepared, code, "an error says what is wrong");
}

}  // namespace
}  // namespace kiln

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kiln;
  const std::optional<fuzz::FrameInput> input = fuzz::SplitFrameInput(data, size);
  if (!input.has_value()) return 0;
  Fixture& fixture = TheFixture();
  internal::ToWorker frame;
  if (!fuzz::ReceiveDatagram(*input, fixture.ends.channel.first, fixture.ends.channel.second,
                             &frame)
           .ok()) {
    return 0;
  }
  if (frame.has_infer()) CheckCall(frame.infer(), *input);
  return 0;
}
