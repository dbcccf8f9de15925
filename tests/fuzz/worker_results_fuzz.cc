// libFuzzer target for what the master reads from a worker (a worker runs the model: its frames
// are not trusted further than they are checked). The input is
//   [2 bytes: n, little-endian][n bytes: one datagram as a worker sends it][the arena's bytes]
// The datagram goes through a real SOCK_SEQPACKET pair into FrameChannel::Receive as a
// FromWorker frame, then as the worker pool takes it (server/supervisor/worker_pool.cc and
// worker_pool_calls.cc):
//   - a warmup report: the compute timeout derived from it (ComputeTimeoutMs) and its log line
//     (DescribeWarmupReport);
//   - a result: its code as the call's status, or its outputs copied out
//     of an arena holding the rest of the input (ViewsInArena, as the pool reads them) and encoded
//     as the response to a request of batch 2 (EncodeInferResponse).
// Whatever the bytes, nothing crashes; a timeout is a finite number of milliseconds the call
// deadline can hold; errors are Internal; an encoded response holds exactly what the config
// promises (its outputs, dtypes and dims, bytes that fill the shapes). Run with scripts/fuzz.sh.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/arena_tensors.h"
#include "common/frame_channel.h"
#include "common/shared_arena.h"
#include "common/tensor.h"
#include "google/protobuf/text_format.h"
#include "proto/model_config.pb.h"
#include "proto/worker_frames.pb.h"
#include "server/codec/infer_codec.h"
#include "server/supervisor/warmup_report_text.h"
#include "server/supervisor/worker_state.h"
#include "tests/fuzz/frame_input.h"
#include "tests/fuzz/fuzz_expect.h"

namespace kiln {
namespace {

using fuzz::Expect;

constexpr size_t kArenaBytes = 64 << 10;
constexpr int64_t kBatch = 2;

// The model whose worker answers: a batch dim, an output of fixed dims and one with a -1 dim.
constexpr char kConfig[] = R"pb(
  name: "m"
  max_batch_size: 4
  input { name: "x" data_type: TYPE_FP32 dims: 2 }
  output { name: "y" data_type: TYPE_FP32 dims: 3 }
  output { name: "z" data_type: TYPE_INT64 dims: -1 }
)pb";

struct Fixture {
  fuzz::FrameEnds ends = fuzz::MakeFrameEnds(kArenaBytes);
  ModelConfig config;
  inference::ModelInferRequest request;  // batch 2 of "x"
  DecodedRequest decoded;
};

Fixture& TheFixture() {
  static Fixture* const fixture = [] {
    auto* made = new Fixture;
    Expect(google::protobuf::TextFormat::ParseFromString(kConfig, &made->config),
           "the fuzzer's config parses");
    const std::vector<float> x(kBatch * 2, 1.0f);
    const TensorView view{"x", DType::kFloat32, {kBatch, 2}, x.data(), x.size() * sizeof(float)};
    absl::StatusOr<inference::ModelInferRequest> request = BuildInferRequest("m", "1", {view});
    Expect(request.ok(), "the fuzzer's request builds");
    made->request = *std::move(request);
    absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(made->request, made->config);
    Expect(decoded.ok() && decoded->batch_size == kBatch, "the fuzzer's request decodes");
    made->decoded = *std::move(decoded);
    return made;
  }();
  return *fixture;
}

void CheckReport(const internal::WarmupReport& report) {
  const double timeout_ms = ComputeTimeoutMs(TheFixture().config, report);
  Expect(std::isfinite(timeout_ms) && timeout_ms >= 5000 && timeout_ms <= 24 * 3600 * 1000.0,
         "a compute timeout of 5 s to a day");
  Expect(!DescribeWarmupReport(report).empty(), "a report's log line");
}

// An encoded response is what the config promises: every output in the config's order, with its
// datatype, the request's batch, the config's dims and bytes that fill the shape.
void CheckResponse(const ModelConfig& config, const inference::ModelInferResponse& response) {
  Expect(response.outputs_size() == config.output_size() &&
             response.raw_output_contents_size() == config.output_size(),
         "every output");
  for (int i = 0; i < config.output_size(); ++i) {
    const TensorConfig& tensor = config.output(i);
    const auto& out = response.outputs(i);
    Expect(out.name() == tensor.name(), "outputs in the config's order");
    Expect(out.datatype() == OipDatatypeName(tensor.data_type()), "the config's datatype");
    Expect(out.shape_size() == tensor.dims_size() + 1 && out.shape(0) == kBatch,
           "the request's batch and the config's rank");
    for (int d = 0; d < tensor.dims_size(); ++d) {
      Expect(tensor.dims(d) == -1 ? out.shape(d + 1) >= 0 : out.shape(d + 1) == tensor.dims(d),
             "the config's dims");
    }
    const std::optional<DType> dtype = DTypeFromDataType(tensor.data_type());
    Expect(ByteSize(*dtype, {out.shape().begin(), out.shape().end()}) ==
               response.raw_output_contents(i).size(),
           "bytes that fill the shape");
  }
}

void CheckResult(const internal::InferResult& result, const fuzz::FrameInput& input) {
  Fixture& fixture = TheFixture();
  if (result.code() != 0) {
    // As the pool turns it into the call's outcome (common/grpc_status.h then maps any code
    // outside gRPC's to UNKNOWN).
    const absl::Status status(static_cast<absl::StatusCode>(result.code()), result.message());
    Expect(!status.ok(), "a worker's error stays an error");
    return;
  }
  SharedArena& arena = *fixture.ends.arena;
  fuzz::LoadArenaImage(input, arena);

  absl::StatusOr<std::vector<TensorView>> outputs = ViewsInArena(result.outputs(), arena);
  fuzz::Note("ViewsInArena", outputs.status());
  if (!outputs.ok()) {
    fuzz::ExpectError(outputs.status(), absl::StatusCode::kInternal, "a bad ref is Internal");
    return;
  }
  inference::ModelInferResponse response;
  const absl::Status encoded = EncodeInferResponse(fixture.config, "1", fixture.request,
                                                   fixture.decoded, *outputs, &response);
  fuzz::Note("EncodeInferResponse", encoded);
  if (!encoded.ok()) {
    fuzz::ExpectError(encoded, absl::StatusCode::kInternal, "a bad output is Internal");
    return;
  }
  CheckResponse(fixture.config, response);
}

}  // namespace
}  // namespace kiln

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kiln;
  const std::optional<fuzz::FrameInput> input = fuzz::SplitFrameInput(data, size);
  if (!input.has_value()) return 0;
  Fixture& fixture = TheFixture();
  internal::FromWorker frame;  // from the worker's end of the pair to the master's
  if (!fuzz::ReceiveDatagram(*input, fixture.ends.channel.second, fixture.ends.channel.first,
                             &frame)
           .ok()) {
    return 0;
  }
  if (frame.has_ready()) CheckReport(frame.ready());
  if (frame.has_result()) CheckResult(frame.result(), *input);
  return 0;
}
