#include "bench/oip_client.h"

#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_status.h"
#include "common/sample_text.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace kiln::bench {
namespace {

// grpc_connectivity_state as gRPC's docs name it.
const char* ChannelStateName(grpc_connectivity_state state) {
  switch (state) {
    case GRPC_CHANNEL_IDLE:
      return "IDLE";
    case GRPC_CHANNEL_CONNECTING:
      return "CONNECTING";
    case GRPC_CHANNEL_READY:
      return "READY";
    case GRPC_CHANNEL_TRANSIENT_FAILURE:
      return "TRANSIENT_FAILURE";
    case GRPC_CHANNEL_SHUTDOWN:
      return "SHUTDOWN";
  }
  return "unknown";
}

using inference::InferTensorContents;
using inference::ModelInferRequest;
using inference::ModelInferResponse;

struct OipName {
  DType dtype;
  absl::string_view name;
};

constexpr std::array<OipName, 13> kOipNames = {{
    {DType::kBool, "BOOL"},
    {DType::kUInt8, "UINT8"},
    {DType::kInt8, "INT8"},
    {DType::kUInt16, "UINT16"},
    {DType::kInt16, "INT16"},
    {DType::kUInt32, "UINT32"},
    {DType::kInt32, "INT32"},
    {DType::kUInt64, "UINT64"},
    {DType::kInt64, "INT64"},
    {DType::kFloat16, "FP16"},
    {DType::kBFloat16, "BF16"},
    {DType::kFloat32, "FP32"},
    {DType::kFloat64, "FP64"},
}};

template <typename T>
void Store(uint8_t* dst, size_t i, T value) {
  std::memcpy(dst + i * sizeof(T), &value, sizeof(T));
}

// [0, 1) from the top 24 (float) or 53 (double) bits of one draw.
float UnitFloat(std::mt19937_64& rng) { return static_cast<float>(rng() >> 40) * 0x1p-24f; }
double UnitDouble(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1p-53; }

// Fills `out` (its dtype and size already set) with the documented synthetic data.
void FillRandom(std::mt19937_64& rng, Tensor* out) {
  const size_t n = out->bytes.size() / DTypeSize(out->dtype);
  uint8_t* data = out->bytes.data();
  for (size_t i = 0; i < n; ++i) {
    const uint64_t small = rng() % 100;  // for the integer types
    switch (out->dtype) {
      case DType::kBool:
        data[i] = static_cast<uint8_t>(small & 1);
        break;
      case DType::kUInt8:
      case DType::kInt8:
        data[i] = static_cast<uint8_t>(small);
        break;
      case DType::kUInt16:
      case DType::kInt16:
        Store<uint16_t>(data, i, static_cast<uint16_t>(small));
        break;
      case DType::kUInt32:
      case DType::kInt32:
        Store<uint32_t>(data, i, static_cast<uint32_t>(small));
        break;
      case DType::kUInt64:
      case DType::kInt64:
        Store<uint64_t>(data, i, small);
        break;
      case DType::kFloat16:
        Store<uint16_t>(data, i, FloatToHalf(2.0f * UnitFloat(rng) - 1.0f));
        break;
      case DType::kBFloat16:
        Store<uint16_t>(data, i, FloatToBFloat16(2.0f * UnitFloat(rng) - 1.0f));
        break;
      case DType::kFloat32:
        Store<float>(data, i, 2.0f * UnitFloat(rng) - 1.0f);
        break;
      case DType::kFloat64:
        Store<double>(data, i, 2.0 * UnitDouble(rng) - 1.0);
        break;
      case DType::kFloat8E4M3:
      case DType::kFloat8E5M2:
        data[i] = 0;  // no OIP name: never reached through MakeRandomInputs
        break;
    }
  }
}

// How many bytes of a --text the request description shows.
constexpr size_t kShownTextBytes = 40;

// `text` quoted for a one-line description: at most kShownTextBytes (cut at a UTF-8 character
// boundary) and then "..." and the full length.
std::string QuotedText(const std::string& text) {
  if (text.size() <= kShownTextBytes) return absl::StrCat("\"", text, "\"");
  size_t cut = kShownTextBytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;
  return absl::StrCat("\"", text.substr(0, cut), "...\" (", text.size(), " bytes)");
}

std::string Describe(const std::string& name, absl::string_view datatype,
                     const std::vector<int64_t>& shape) {
  return absl::StrCat(name, " ", datatype, " ", ShapeString(shape));
}

template <typename... Args>
absl::Status BadOutput(absl::string_view name, const Args&... what) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed ModelInfer response: output '", name, "': ", what...));
}

// Copies typed contents (`values`, of the contents field `field`) into `out` as `T`s.
template <typename T, typename Values>
absl::Status CopyTyped(const Values& values, absl::string_view field, int64_t elements,
                       Tensor* out) {
  if (static_cast<int64_t>(values.size()) != elements) {
    return BadOutput(out->name, values.size(), " values in contents.", field, ", expected ",
                     elements, " for ", ShapeString(out->shape));
  }
  out->bytes.resize(static_cast<size_t>(elements) * sizeof(T));
  for (int64_t i = 0; i < elements; ++i) {
    Store<T>(out->bytes.data(), static_cast<size_t>(i), static_cast<T>(values[i]));
  }
  return absl::OkStatus();
}

absl::Status DecodeTyped(const InferTensorContents& contents, int64_t elements, Tensor* out) {
  switch (out->dtype) {
    case DType::kBool:
      return CopyTyped<uint8_t>(contents.bool_contents(), "bool_contents", elements, out);
    case DType::kInt8:
      return CopyTyped<int8_t>(contents.int_contents(), "int_contents", elements, out);
    case DType::kInt16:
      return CopyTyped<int16_t>(contents.int_contents(), "int_contents", elements, out);
    case DType::kInt32:
      return CopyTyped<int32_t>(contents.int_contents(), "int_contents", elements, out);
    case DType::kInt64:
      return CopyTyped<int64_t>(contents.int64_contents(), "int64_contents", elements, out);
    case DType::kUInt8:
      return CopyTyped<uint8_t>(contents.uint_contents(), "uint_contents", elements, out);
    case DType::kUInt16:
      return CopyTyped<uint16_t>(contents.uint_contents(), "uint_contents", elements, out);
    case DType::kUInt32:
      return CopyTyped<uint32_t>(contents.uint_contents(), "uint_contents", elements, out);
    case DType::kUInt64:
      return CopyTyped<uint64_t>(contents.uint64_contents(), "uint64_contents", elements, out);
    case DType::kFloat32:
      return CopyTyped<float>(contents.fp32_contents(), "fp32_contents", elements, out);
    case DType::kFloat64:
      return CopyTyped<double>(contents.fp64_contents(), "fp64_contents", elements, out);
    default:
      if (elements == 0) return absl::OkStatus();
      return BadOutput(out->name, *OipDatatypeForDType(out->dtype),
                       " has no typed contents field; it must come in raw_output_contents");
  }
}

}  // namespace

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address, int max_message_bytes) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(max_message_bytes);
  arguments.SetMaxSendMessageSize(max_message_bytes);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), arguments);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> Connected(std::shared_ptr<grpc::Channel> channel,
                                                         const std::string& address,
                                                         std::chrono::milliseconds timeout) {
  if (channel->WaitForConnected(std::chrono::system_clock::now() + timeout)) return channel;
  // Why: a call that does not wait for the connection fails with gRPC's reason for the last
  // attempt ("... Connection refused").
  grpc::ClientContext context;
  SetTimeout(&context, 1000);
  inference::ServerLiveResponse live;
  const grpc::Status why =
      inference::GRPCInferenceService::NewStub(channel)->ServerLive(&context, {}, &live);
  return absl::UnavailableError(absl::StrCat(
      "could not connect to ", address, " within ", std::chrono::duration<double>(timeout).count(),
      " s (gRPC channel state ", ChannelStateName(channel->GetState(false)),
      why.ok() ? "" : absl::StrCat(": ", why.error_message()), "); is a server serving there?"));
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> ConnectChannel(const std::string& address,
                                                              std::chrono::milliseconds timeout) {
  return Connected(CreateChannel(address), address, timeout);
}

void SetTimeout(grpc::ClientContext* context, int64_t timeout_ms) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
}

std::string GrpcCodeName(grpc::StatusCode code) {
  static constexpr std::array<absl::string_view, 17> kNames = {
      "OK",
      "CANCELLED",
      "UNKNOWN",
      "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED",
      "NOT_FOUND",
      "ALREADY_EXISTS",
      "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION",
      "ABORTED",
      "OUT_OF_RANGE",
      "UNIMPLEMENTED",
      "INTERNAL",
      "UNAVAILABLE",
      "DATA_LOSS",
      "UNAUTHENTICATED",
  };
  const int value = static_cast<int>(code);
  if (value >= 0 && value < static_cast<int>(kNames.size())) return std::string(kNames[value]);
  return absl::StrCat("CODE_", value);
}

std::string FormatGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return "OK";
  return absl::StrCat(GrpcCodeName(status.error_code()), ": ", status.error_message());
}

std::optional<absl::string_view> OipDatatypeForDType(DType dtype) {
  for (const OipName& entry : kOipNames) {
    if (entry.dtype == dtype) return entry.name;
  }
  return std::nullopt;
}

std::optional<DType> DTypeForOipDatatype(absl::string_view datatype) {
  for (const OipName& entry : kOipNames) {
    if (entry.name == datatype) return entry.dtype;
  }
  return std::nullopt;
}

absl::StatusOr<inference::ModelMetadataResponse> FetchModelMetadata(
    inference::GRPCInferenceService::Stub& stub, const std::string& model,
    const std::string& version, int64_t timeout_ms) {
  inference::ModelMetadataRequest request;
  request.set_name(model);
  request.set_version(version);
  inference::ModelMetadataResponse metadata;
  grpc::ClientContext context;
  SetTimeout(&context, timeout_ms);
  const grpc::Status status = stub.ModelMetadata(&context, request, &metadata);
  if (!status.ok()) {
    // The server's code; "ModelMetadata failed: NOT_FOUND: <the server's message>".
    return Annotate(FromGrpcStatus(status),
                    absl::StrCat("ModelMetadata failed: ", GrpcCodeName(status.error_code())));
  }
  return metadata;
}

std::vector<InputSpec> InputSpecsFromMetadata(const inference::ModelMetadataResponse& metadata) {
  std::vector<InputSpec> specs;
  for (const auto& input : metadata.inputs()) {
    specs.push_back({input.name(), input.datatype(), {input.shape().begin(), input.shape().end()}});
  }
  return specs;
}

absl::StatusOr<std::vector<int64_t>> ResolveShape(const std::vector<int64_t>& shape, int64_t batch,
                                                  int64_t seq) {
  if (batch < 1 || seq < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch and seq must be >= 1, got batch ", batch, ", seq ", seq));
  }
  std::vector<int64_t> resolved;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      resolved.push_back(i == 0 ? batch : seq);
    } else if (shape[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("dim ", i, " of shape ", ShapeString(shape),
                                                     " is ", shape[i],
                                                     "; only -1 (variable) may be negative"));
    } else {
      resolved.push_back(shape[i]);
    }
  }
  return resolved;
}

absl::StatusOr<std::vector<Tensor>> MakeRandomInputs(const std::vector<InputSpec>& specs,
                                                     int64_t batch, int64_t seq, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Tensor> tensors;
  for (const InputSpec& spec : specs) {
    const std::optional<DType> dtype = DTypeForOipDatatype(spec.datatype);
    if (!dtype) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", spec.name, "': no random data for datatype ", spec.datatype,
          spec.datatype == "BYTES" ? " (a text input takes text, not random data)" : ""));
    }
    absl::StatusOr<std::vector<int64_t>> shape = ResolveShape(spec.shape, batch, seq);
    if (!shape.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("input '", spec.name, "': ", shape.status().message()));
    }
    const std::optional<size_t> nbytes = ByteSize(*dtype, *shape);
    if (!nbytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("input '", spec.name, "': shape ", ShapeString(*shape), " is too large"));
    }
    Tensor tensor;
    tensor.name = spec.name;
    tensor.dtype = *dtype;
    tensor.shape = std::move(*shape);
    tensor.bytes.resize(*nbytes);
    FillRandom(rng, &tensor);
    tensors.push_back(std::move(tensor));
  }
  return tensors;
}

std::optional<size_t> FindTextInput(const std::vector<InputSpec>& specs) {
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].datatype == "BYTES") return i;
  }
  return std::nullopt;
}

absl::StatusOr<ModelInferRequest> BuildTextRequest(const std::string& model,
                                                   const std::string& version,
                                                   const InputSpec& text_input,
                                                   const std::string& text, int64_t batch) {
  absl::StatusOr<std::vector<int64_t>> shape = ResolveShape(text_input.shape, batch, 1);
  if (!shape.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("input '", text_input.name, "': ", shape.status().message()));
  }
  const std::optional<int64_t> elements = NumElements(*shape);
  if (!elements) {
    return absl::InvalidArgumentError(
        absl::StrCat("input '", text_input.name, "': invalid shape ", ShapeString(*shape)));
  }
  ModelInferRequest request;
  request.set_model_name(model);
  request.set_model_version(version);
  ModelInferRequest::InferInputTensor& input = *request.add_inputs();
  input.set_name(text_input.name);
  input.set_datatype("BYTES");
  input.mutable_shape()->Add(shape->begin(), shape->end());
  auto& rows = *input.mutable_contents()->mutable_bytes_contents();
  rows.Reserve(static_cast<int>(*elements));
  for (int64_t i = 0; i < *elements; ++i) *rows.Add() = text;
  return request;
}

absl::StatusOr<SyntheticRequest> BuildSyntheticRequest(
    const inference::ModelMetadataResponse& metadata, const std::string& model,
    const std::string& version, const SyntheticRequestOptions& options) {
  const std::vector<InputSpec> specs = InputSpecsFromMetadata(metadata);
  SyntheticRequest out;
  if (const std::optional<size_t> text_index = FindTextInput(specs)) {
    const InputSpec& spec = specs[*text_index];
    if (!options.text && (options.seq < 1 || options.seq > std::numeric_limits<int32_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "seq must be in 1..", std::numeric_limits<int32_t>::max(), ", got ", options.seq));
    }
    const std::string text =
        options.text ? *options.text : SampleText(static_cast<int32_t>(options.seq));
    ASSIGN_OR_RETURN(out.request, BuildTextRequest(model, version, spec, text, options.batch));
    const auto& shape = out.request.inputs(0).shape();
    out.inputs.push_back(Describe(spec.name, "BYTES", {shape.begin(), shape.end()}));
    out.origin = options.text ? absl::StrCat("text ", QuotedText(*options.text))
                              : absl::StrCat("sample text, ", options.seq, " words");
    return out;
  }
  if (options.text) {
    std::vector<std::string> inputs;
    for (const InputSpec& spec : specs)
      inputs.push_back(Describe(spec.name, spec.datatype, spec.shape));
    return absl::InvalidArgumentError(
        absl::StrCat("model '", model, "' takes no text (no BYTES input; its inputs: ",
                     inputs.empty() ? "none" : absl::StrJoin(inputs, ", "), "); leave out --text"));
  }
  ASSIGN_OR_RETURN(const std::vector<Tensor> tensors,
                   MakeRandomInputs(specs, options.batch, options.seq, options.seed));
  std::vector<TensorView> views;
  for (const Tensor& tensor : tensors) {
    views.push_back(tensor.view());
    out.inputs.push_back(Describe(tensor.name, *OipDatatypeForDType(tensor.dtype), tensor.shape));
  }
  ASSIGN_OR_RETURN(out.request, BuildInferRequest(model, version, views));
  out.origin = absl::StrCat("random, seed ", options.seed);
  return out;
}

absl::StatusOr<std::vector<Tensor>> DecodeInferResponse(const ModelInferResponse& response) {
  const bool raw = response.raw_output_contents_size() > 0;
  if (raw && response.raw_output_contents_size() != response.outputs_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed ModelInfer response: ", response.raw_output_contents_size(),
                     " raw_output_contents for ", response.outputs_size(), " outputs"));
  }
  std::vector<Tensor> tensors;
  tensors.reserve(response.outputs_size());
  for (int i = 0; i < response.outputs_size(); ++i) {
    const auto& output = response.outputs(i);
    Tensor tensor;
    tensor.name = output.name();
    tensor.shape.assign(output.shape().begin(), output.shape().end());
    const std::optional<DType> dtype = DTypeForOipDatatype(output.datatype());
    if (!dtype) {
      return BadOutput(
          output.name(), "datatype '", output.datatype(), "' is not supported",
          output.datatype() == "BYTES" ? " (BYTES outputs cannot become tensors)" : "");
    }
    tensor.dtype = *dtype;
    const std::optional<int64_t> elements = NumElements(tensor.shape);
    const std::optional<size_t> expected = ByteSize(tensor.dtype, tensor.shape);
    if (!elements || !expected) {
      return BadOutput(output.name(), "invalid shape ", ShapeString(tensor.shape));
    }
    if (raw) {
      const std::string& bytes = response.raw_output_contents(i);
      if (bytes.size() != *expected) {
        return BadOutput(output.name(), bytes.size(), " bytes of raw content, expected ", *expected,
                         " for ", output.datatype(), " ", ShapeString(tensor.shape));
      }
      tensor.bytes.assign(bytes.begin(), bytes.end());
    } else {
      RETURN_IF_ERROR(DecodeTyped(output.contents(), *elements, &tensor));
    }
    tensors.push_back(std::move(tensor));
  }
  return tensors;
}

}  // namespace kiln::bench
