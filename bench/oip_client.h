// Client-side helpers shared by kiln-bench's sub-commands: the gRPC channel, Open Inference
// Protocol (KServe v2) requests built from kiln::TensorView and responses decoded into
// kiln::Tensor, synthetic requests for a model's metadata (random numbers, or text for a text
// model), and gRPC status formatting.
//
// Everything here except CreateChannel and the two that connect is a pure function of its
// arguments: no state, safe to call from any thread (the load generator will call them from many).
#ifndef KILN_BENCH_OIP_CLIENT_H_
#define KILN_BENCH_OIP_CLIENT_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"
#include "common/tensor.h"
#include "proto/grpc_service.grpc.pb.h"
#include "proto/grpc_service.pb.h"
#include "server/codec/infer_codec.h"  // BuildInferRequest

namespace kiln::bench {

// Largest message the client sends or receives; above kiln-server's own default (64 MiB), so
// the server's limit is the one a user meets.
inline constexpr int kDefaultMaxMessageBytes = 256 << 20;

// An insecure channel to `address` ("host:port") with the send and receive limits raised to
// `max_message_bytes`. Channels are thread-safe and meant to be shared.
std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address,
                                             int max_message_bytes = kDefaultMaxMessageBytes);

// How long ConnectChannel waits by default.
inline constexpr std::chrono::milliseconds kConnectTimeout = std::chrono::seconds(10);

// `channel` (to `address`, where a server is expected to be serving), connected (READY) before it
// is returned: it waits through failed connection attempts and gRPC's reconnect backoff. A
// channel whose first attempt failed would otherwise fail every call at once until it
// reconnects, and Debian 12's gRPC 1.51 client now and then fails a loopback connect on its own
// side (docs/operating.md, "Errors a client can get"). Unavailable, naming the address, the
// channel's state and gRPC's reason, when it is not connected within `timeout`.
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connected(std::shared_ptr<grpc::Channel> channel,
                                                         const std::string& address,
                                                         std::chrono::milliseconds timeout);

// Connected(CreateChannel(address), address, timeout).
absl::StatusOr<std::shared_ptr<grpc::Channel>> ConnectChannel(
    const std::string& address, std::chrono::milliseconds timeout = kConnectTimeout);

// Sets a deadline of now + `timeout_ms` on `context`.
void SetTimeout(grpc::ClientContext* context, int64_t timeout_ms);

// "UNAVAILABLE", "DEADLINE_EXCEEDED", ...; "CODE_<n>" for a value outside the enum.
std::string GrpcCodeName(grpc::StatusCode code);
// "UNAVAILABLE: failed to connect to all addresses" ("OK" for an OK status).
std::string FormatGrpcStatus(const grpc::Status& status);

// OIP datatype names for kiln dtypes, and back. Every OIP numeric type is known (including
// UINT16/32/64, which kiln's configs cannot declare but other servers may send); the 8-bit
// floats have no OIP name and "BYTES" has no DType: both are std::nullopt.
std::optional<absl::string_view> OipDatatypeForDType(DType dtype);
std::optional<DType> DTypeForOipDatatype(absl::string_view datatype);

// ModelMetadata of `model` (`version` "" = the server's choice), with a deadline of
// `timeout_ms`. A failed RPC comes back with its gRPC code and the message
// "ModelMetadata failed: <CODE>: <message>".
absl::StatusOr<inference::ModelMetadataResponse> FetchModelMetadata(
    inference::GRPCInferenceService::Stub& stub, const std::string& model,
    const std::string& version, int64_t timeout_ms);

// One input as ModelMetadata describes it: OIP datatype and shape, -1 for variable dims (kiln
// puts the batch dim first, as -1, for a model with max_batch_size > 0).
struct InputSpec {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
};
std::vector<InputSpec> InputSpecsFromMetadata(const inference::ModelMetadataResponse& metadata);

// The concrete shape to send for a metadata shape: a leading -1 (the batch dim) becomes
// `batch`, every other -1 becomes `seq`. Any other negative dim, or batch/seq < 1, is an
// InvalidArgument.
absl::StatusOr<std::vector<int64_t>> ResolveShape(const std::vector<int64_t>& shape, int64_t batch,
                                                  int64_t seq);

// Seeded synthetic data for every input, at ResolveShape(spec.shape, batch, seq): floats
// (FP16/BF16/FP32/FP64) uniform in [-1, 1), integers uniform in [0, 100), BOOL 0/1. The same
// specs and seed give the same bytes on every platform. A BYTES input (or an unknown datatype)
// is an InvalidArgument naming it: text goes through BuildSyntheticRequest.
absl::StatusOr<std::vector<Tensor>> MakeRandomInputs(const std::vector<InputSpec>& specs,
                                                     int64_t batch, int64_t seq, uint64_t seed);

// The text input of a text model: the index of the first BYTES input in `specs` (kiln lists a
// text model's text input first, shape [-1, 1], before its token inputs), or std::nullopt.
std::optional<size_t> FindTextInput(const std::vector<InputSpec>& specs);

// A request carrying only `text_input` (datatype BYTES, bytes_contents): its shape is
// ResolveShape(text_input.shape, batch, 1) ([batch, 1] for kiln's [-1, 1]) and every element
// holds `text`. A bad shape is an InvalidArgument naming the input.
absl::StatusOr<inference::ModelInferRequest> BuildTextRequest(const std::string& model,
                                                              const std::string& version,
                                                              const InputSpec& text_input,
                                                              const std::string& text,
                                                              int64_t batch);

// What infer, coldstart and load send when no input file is given.
struct SyntheticRequestOptions {
  int64_t batch = 1;  // the leading -1 dim
  int64_t seq = 16;   // numeric inputs: every other -1 dim; text: SampleText(seq) words
  uint64_t seed = 0;  // numeric inputs only
  std::optional<std::string> text;  // --text; std::nullopt = kiln::SampleText(seq)
};

struct SyntheticRequest {
  inference::ModelInferRequest request;
  std::vector<std::string> inputs;  // "name DATATYPE [shape]" per input sent, in order
  std::string origin;               // "random, seed 7", "sample text, 16 words" or "text \"hello\""
};

// The one rule for a request built from ModelMetadata. A model with a BYTES input (a text
// model) gets text in that input alone (BuildTextRequest): `options.text` when set, else
// kiln::SampleText(options.seq), the same string in each of the `options.batch` rows; its token
// inputs are not sent (the server tokenizes). Any other model gets MakeRandomInputs for every
// input. `options.text` for a model without a BYTES input, or inputs MakeRandomInputs refuses,
// are an InvalidArgument.
absl::StatusOr<SyntheticRequest> BuildSyntheticRequest(
    const inference::ModelMetadataResponse& metadata, const std::string& model,
    const std::string& version, const SyntheticRequestOptions& options);

// The outputs of a response as tensors, in the response's order. Reads raw_output_contents, or
// the typed contents when the server sent those instead. A malformed response (raw entries not
// one per output, a byte or element count that does not match the shape, an unknown datatype,
// a BYTES output) is an InvalidArgument naming the output.
absl::StatusOr<std::vector<Tensor>> DecodeInferResponse(
    const inference::ModelInferResponse& response);

// Sends the one prepared request with the gRPC callback API. Ownership: borrows the stub and the
// request, which must outlive it; the destructor waits until every call it started completed
// (each has a deadline, so gRPC completes it by then). Thread-safe.
class GrpcSender {
 public:
  GrpcSender(inference::GRPCInferenceService::Stub* stub,
             const inference::ModelInferRequest* request, int64_t timeout_ms)
      : stub_(stub), request_(request), timeout_ms_(timeout_ms) {}
  ~GrpcSender() {
    std::unique_lock<std::mutex> lock(mu_);
    idle_.wait(lock, [&] { return in_flight_ == 0; });
  }
  GrpcSender(const GrpcSender&) = delete;
  GrpcSender& operator=(const GrpcSender&) = delete;

  // Starts one call; `done` gets its status exactly once, on a gRPC thread.
  void Send(std::function<void(grpc::Status)> done) {
    auto* call = new Call;
    call->done = std::move(done);
    SetTimeout(&call->context, timeout_ms_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++in_flight_;
    }
    stub_->async()->ModelInfer(&call->context, request_, &call->response,
                               [this, call](grpc::Status status) {
                                 call->done(std::move(status));
                                 delete call;
                                 std::lock_guard<std::mutex> lock(mu_);
                                 if (--in_flight_ == 0) idle_.notify_all();
                               });
  }

 private:
  struct Call {
    grpc::ClientContext context;
    inference::ModelInferResponse response;
    std::function<void(grpc::Status)> done;
  };

  inference::GRPCInferenceService::Stub* const stub_;
  const inference::ModelInferRequest* const request_;
  const int64_t timeout_ms_;
  std::mutex mu_;
  std::condition_variable idle_;
  int64_t in_flight_ = 0;  // GUARDED_BY(mu_)
};

}  // namespace kiln::bench

#endif  // KILN_BENCH_OIP_CLIENT_H_
