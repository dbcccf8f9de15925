#include "server/codec/infer_codec.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/bytes_form.h"
#include "common/status_macros.h"
#include "server/codec/classification.h"

namespace kiln {
namespace {

using google::protobuf::RepeatedField;
using google::protobuf::RepeatedPtrField;
using inference::InferTensorContents;
using inference::ModelInferRequest;
using InputTensor = inference::ModelInferRequest::InferInputTensor;

struct OipName {
  DataType type;
  absl::string_view name;
};

constexpr std::array<OipName, 11> kOipNames = {{
    {TYPE_BOOL, "BOOL"},
    {TYPE_UINT8, "UINT8"},
    {TYPE_INT8, "INT8"},
    {TYPE_INT16, "INT16"},
    {TYPE_INT32, "INT32"},
    {TYPE_INT64, "INT64"},
    {TYPE_FP16, "FP16"},
    {TYPE_FP32, "FP32"},
    {TYPE_FP64, "FP64"},
    {TYPE_BF16, "BF16"},
    {TYPE_BYTES, "BYTES"},
}};

// "input 'x': <what>" as InvalidArgument.
template <typename... Args>
absl::Status BadInput(absl::string_view name, const Args&... what) {
  return absl::InvalidArgumentError(absl::StrCat("input '", name, "': ", what...));
}

// "output 'x': <what>" as Internal: the backend broke its contract.
template <typename... Args>
absl::Status BadOutput(absl::string_view name, const Args&... what) {
  return absl::InternalError(absl::StrCat("output '", name, "': ", what...));
}

std::string Quoted(absl::string_view name) { return absl::StrCat("'", name, "'"); }

// "'a', 'b'".
std::string TensorNames(const RepeatedPtrField<TensorConfig>& tensors) {
  return absl::StrJoin(tensors, ", ", [](std::string* out, const TensorConfig& tensor) {
    absl::StrAppend(out, Quoted(tensor.name()), tensor.optional() ? " (optional)" : "");
  });
}

// The index of the tensor called `name`, or -1.
int FindTensorIndex(const RepeatedPtrField<TensorConfig>& tensors, absl::string_view name) {
  for (int i = 0; i < tensors.size(); ++i) {
    if (tensors[i].name() == name) return i;
  }
  return -1;
}

const TensorConfig* FindTensor(const RepeatedPtrField<TensorConfig>& tensors,
                               absl::string_view name) {
  const int i = FindTensorIndex(tensors, name);
  return i < 0 ? nullptr : &tensors[i];
}

// The model's full shape for a tensor: the batch dim as -1 first when batching.
std::vector<int64_t> ModelShape(const TensorConfig& tensor, int32_t max_batch_size) {
  std::vector<int64_t> shape;
  if (max_batch_size > 0) shape.push_back(-1);
  shape.insert(shape.end(), tensor.dims().begin(), tensor.dims().end());
  return shape;
}

// "[-1, 16] (batch dim then dims [16])" or, without batching, "[4, -1]".
std::string ModelShapeText(const TensorConfig& tensor, int32_t max_batch_size) {
  std::string text = ShapeString(ModelShape(tensor, max_batch_size));
  if (max_batch_size > 0) {
    absl::StrAppend(&text, " (batch dim then dims ",
                    ShapeString({tensor.dims().begin(), tensor.dims().end()}), ")");
  }
  return text;
}

// --- request structure ---------------------------------------------------------------------

// For each config input, the index of the request input that carries it, or -1 for an optional
// input left out. Unknown and repeated inputs, missing required ones and a request with no input
// at all are errors.
absl::StatusOr<std::vector<int>> MatchInputs(const ModelInferRequest& request,
                                             const ModelConfig& config) {
  if (request.inputs_size() > config.input_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(request.inputs_size(), " inputs given; the model has ", config.input_size(),
                     ": ", TensorNames(config.input())));
  }
  std::vector<int> index(config.input_size(), -1);
  for (int r = 0; r < request.inputs_size(); ++r) {
    const std::string& name = request.inputs(r).name();
    const int c = FindTensorIndex(config.input(), name);
    if (c < 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown input ", Quoted(name),
                                                     ": the model's inputs are ",
                                                     TensorNames(config.input())));
    }
    int& slot = index[c];
    if (slot >= 0) return BadInput(name, "given more than once");
    slot = r;
  }
  for (int c = 0; c < config.input_size(); ++c) {
    if (index[c] < 0 && !config.input(c).optional()) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing input ", Quoted(config.input(c).name()),
                       ": the model's inputs are ", TensorNames(config.input())));
    }
  }
  if (request.inputs().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no input given: the model's inputs are ",
                                                   TensorNames(config.input()),
                                                   ": give at least one"));
  }
  return index;
}

// The requested output names, in request order; each must be one of the config's, once.
absl::Status RequestedOutputs(const ModelInferRequest& request, const ModelConfig& config,
                              DecodedRequest& decoded) {
  std::set<std::string> seen;
  for (const auto& output : request.outputs()) {
    const TensorConfig* tensor = FindTensor(config.output(), output.name());
    if (tensor == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown output ", Quoted(output.name()),
                                                     " requested: the model's outputs are ",
                                                     TensorNames(config.output())));
    }
    if (!seen.insert(output.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("output ", Quoted(output.name()), " requested more than once"));
    }
    ASSIGN_OR_RETURN(const uint32_t classes, RequestedClassCount(output, *tensor));
    decoded.outputs.push_back(output.name());
    decoded.class_counts.push_back(classes);
  }
  return absl::OkStatus();
}

// A schedule policy parameter of `request` (Triton's "priority" or "timeout"): a non-negative
// int64_param or a uint64_param; 0 when absent.
absl::StatusOr<uint64_t> SchedulingParameter(const ModelInferRequest& request, const char* name) {
  const auto found = request.parameters().find(name);
  if (found == request.parameters().end()) return 0;
  const inference::InferParameter& parameter = found->second;
  if (parameter.parameter_choice_case() == inference::InferParameter::kUint64Param) {
    return parameter.uint64_param();
  }
  if (parameter.parameter_choice_case() == inference::InferParameter::kInt64Param &&
      parameter.int64_param() >= 0) {
    return static_cast<uint64_t>(parameter.int64_param());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("parameter '", name, "' must be a non-negative int64_param or a uint64_param"));
}

// --- typed contents ------------------------------------------------------------------------

// The repeated fields of InferTensorContents.
enum class ContentField { kBool, kInt, kInt64, kUint, kUint64, kFp32, kFp64, kBytes };

constexpr std::array<ContentField, 8> kContentFields = {
    ContentField::kBool,   ContentField::kInt,  ContentField::kInt64, ContentField::kUint,
    ContentField::kUint64, ContentField::kFp32, ContentField::kFp64,  ContentField::kBytes,
};

absl::string_view FieldName(ContentField field) {
  switch (field) {
    case ContentField::kBool:
      return "bool_contents";
    case ContentField::kInt:
      return "int_contents";
    case ContentField::kInt64:
      return "int64_contents";
    case ContentField::kUint:
      return "uint_contents";
    case ContentField::kUint64:
      return "uint64_contents";
    case ContentField::kFp32:
      return "fp32_contents";
    case ContentField::kFp64:
      return "fp64_contents";
    case ContentField::kBytes:
      return "bytes_contents";
  }
  return "";
}

int FieldSize(const InferTensorContents& contents, ContentField field) {
  switch (field) {
    case ContentField::kBool:
      return contents.bool_contents_size();
    case ContentField::kInt:
      return contents.int_contents_size();
    case ContentField::kInt64:
      return contents.int64_contents_size();
    case ContentField::kUint:
      return contents.uint_contents_size();
    case ContentField::kUint64:
      return contents.uint64_contents_size();
    case ContentField::kFp32:
      return contents.fp32_contents_size();
    case ContentField::kFp64:
      return contents.fp64_contents_size();
    case ContentField::kBytes:
      return contents.bytes_contents_size();
  }
  return 0;
}

// The field that carries a datatype's typed contents; none for FP16 and BF16.
std::optional<ContentField> FieldFor(DataType type) {
  switch (type) {
    case TYPE_BOOL:
      return ContentField::kBool;
    case TYPE_INT8:
    case TYPE_INT16:
    case TYPE_INT32:
      return ContentField::kInt;
    case TYPE_INT64:
      return ContentField::kInt64;
    case TYPE_UINT8:
      return ContentField::kUint;
    case TYPE_FP32:
      return ContentField::kFp32;
    case TYPE_FP64:
      return ContentField::kFp64;
    case TYPE_BYTES:
      return ContentField::kBytes;
    default:
      return std::nullopt;
  }
}

// Whether any typed field holds a value (an empty `contents` message counts as none).
bool HasTypedContents(const InferTensorContents& contents) {
  return std::any_of(kContentFields.begin(), kContentFields.end(),
                     [&](ContentField field) { return FieldSize(contents, field) > 0; });
}

// Writes `values` into `owned` as Out, rejecting a value that Out cannot hold.
template <typename Out, typename In>
absl::Status CopyValues(const RepeatedField<In>& values, const std::string& name, DataType type,
                        std::vector<uint8_t>* owned) {
  owned->resize(values.size() * sizeof(Out));
  for (int i = 0; i < values.size(); ++i) {
    const Out value = static_cast<Out>(values[i]);
    if constexpr (sizeof(Out) < sizeof(In)) {
      if (static_cast<In>(value) != values[i]) {
        return BadInput(name, FieldName(*FieldFor(type)), "[", i, "] = ", values[i],
                        " is out of range for ", OipDatatypeName(type));
      }
    }
    std::memcpy(owned->data() + i * sizeof(Out), &value, sizeof(Out));
  }
  return absl::OkStatus();
}

absl::Status ConvertTyped(const InferTensorContents& contents, DecodedInput* out) {
  const std::string& name = out->view.name;
  const DataType type = out->data_type;
  std::vector<uint8_t>* owned = &out->owned;
  switch (type) {
    case TYPE_BOOL:
      return CopyValues<uint8_t>(contents.bool_contents(), name, type, owned);
    case TYPE_INT8:
      return CopyValues<int8_t>(contents.int_contents(), name, type, owned);
    case TYPE_INT16:
      return CopyValues<int16_t>(contents.int_contents(), name, type, owned);
    case TYPE_INT32:
      return CopyValues<int32_t>(contents.int_contents(), name, type, owned);
    case TYPE_INT64:
      return CopyValues<int64_t>(contents.int64_contents(), name, type, owned);
    case TYPE_UINT8:
      return CopyValues<uint8_t>(contents.uint_contents(), name, type, owned);
    case TYPE_FP32:
      return CopyValues<float>(contents.fp32_contents(), name, type, owned);
    case TYPE_FP64:
      return CopyValues<double>(contents.fp64_contents(), name, type, owned);
    default:
      return BadInput(name, "no typed conversion for ", OipDatatypeName(type));
  }
}

// Decodes typed contents, which must use exactly the datatype's field, one value per element.
absl::Status DecodeTyped(const InferTensorContents& contents, int64_t elements, DecodedInput* out) {
  const std::string& name = out->view.name;
  const absl::string_view datatype = OipDatatypeName(out->data_type);
  const std::optional<ContentField> field = FieldFor(out->data_type);
  if (!field.has_value()) {
    return BadInput(name, datatype, " has no typed contents field; send it in raw_input_contents");
  }
  for (ContentField other : kContentFields) {
    if (other != *field && FieldSize(contents, other) > 0) {
      return BadInput(name, datatype, " contents belong in ", FieldName(*field), ", got ",
                      FieldName(other));
    }
  }
  const int count = FieldSize(contents, *field);
  if (count != elements) {
    return BadInput(name, count, " values in ", FieldName(*field), ", expected ", elements, " for ",
                    datatype, " ", ShapeString(out->view.shape));
  }
  if (out->data_type == TYPE_BYTES) {
    for (int i = 0; i < count; ++i) {
      if (contents.bytes_contents(i).size() > kMaxBytesElementSize) {
        return BadInput(name, "element ", i, " is ", contents.bytes_contents(i).size(),
                        " bytes, more than the ", kMaxBytesElementSize, " allowed");
      }
    }
    out->strings.assign(contents.bytes_contents().begin(), contents.bytes_contents().end());
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(ConvertTyped(contents, out));
  out->view.data = out->owned.data();
  out->view.nbytes = out->owned.size();
  return absl::OkStatus();
}

// --- raw contents --------------------------------------------------------------------------

// Raw contents, if used, come one entry per input and exclude typed contents everywhere.
absl::Status CheckContentsForm(const ModelInferRequest& request) {
  if (request.raw_input_contents().empty()) return absl::OkStatus();
  if (request.raw_input_contents_size() != request.inputs_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "raw_input_contents has ", request.raw_input_contents_size(), " entries for ",
        request.inputs_size(), " inputs; expected one per input, in the order of 'inputs'"));
  }
  for (const InputTensor& input : request.inputs()) {
    if (HasTypedContents(input.contents())) {
      return BadInput(input.name(),
                      "raw_input_contents and typed contents mixed; use one form "
                      "for every input");
    }
  }
  return absl::OkStatus();
}

// Splits the BYTES raw form into exactly `elements` strings.
absl::Status DecodeRawBytes(absl::string_view raw, int64_t elements, DecodedInput* out) {
  absl::StatusOr<std::vector<std::string>> strings = SplitBytesForm(
      raw, elements, absl::StrCat("shape ", ShapeString(out->view.shape)), kMaxBytesElementSize);
  if (!strings.ok()) {
    return BadInput(out->view.name, "malformed BYTES: ", strings.status().message());
  }
  out->strings = *std::move(strings);
  return absl::OkStatus();
}

// Points the view at raw numeric contents (zero-copy) after checking their size.
absl::Status DecodeRaw(const std::string& raw, int64_t elements, DecodedInput* out) {
  if (out->data_type == TYPE_BYTES) return DecodeRawBytes(raw, elements, out);
  const size_t element_size = DTypeSize(out->view.dtype);
  size_t expected = 0;
  const bool overflow =
      __builtin_mul_overflow(static_cast<size_t>(elements), element_size, &expected);
  if (overflow || raw.size() != expected) {
    return BadInput(out->view.name, raw.size(), " bytes of raw content, expected ",
                    overflow ? absl::StrCat(elements, " x ", element_size) : absl::StrCat(expected),
                    " for ", OipDatatypeName(out->data_type), " ", ShapeString(out->view.shape));
  }
  out->view.data = raw.data();
  out->view.nbytes = raw.size();
  return absl::OkStatus();
}

// --- one input -----------------------------------------------------------------------------

absl::Status CheckDatatype(const InputTensor& input, const TensorConfig& tensor) {
  const absl::string_view expected = OipDatatypeName(tensor.data_type());
  const std::optional<DataType> type = DataTypeFromOipName(input.datatype());
  if (!type.has_value()) {
    return BadInput(input.name(), "datatype '", input.datatype(),
                    "' is not supported (the model expects ", expected, ")");
  }
  if (*type != tensor.data_type()) {
    return BadInput(input.name(), "datatype ", input.datatype(), " does not match the model's ",
                    expected);
  }
  return absl::OkStatus();
}

// Checks a request shape against the config; returns its element count.
absl::StatusOr<int64_t> CheckShape(const std::string& name, const std::vector<int64_t>& shape,
                                   const TensorConfig& tensor, int32_t max_batch_size) {
  const std::string got = ShapeString(shape);
  if (std::any_of(shape.begin(), shape.end(), [](int64_t dim) { return dim < 0; })) {
    return BadInput(name, "shape ", got, " has a negative dim");
  }
  const auto mismatch = [&] {
    return BadInput(name, "shape ", got, " does not match the model's ",
                    ModelShapeText(tensor, max_batch_size));
  };
  const size_t offset = max_batch_size > 0 ? 1 : 0;
  if (shape.size() != tensor.dims().size() + offset) return mismatch();
  if (offset == 1 && shape[0] < 1) return BadInput(name, "batch ", shape[0], " is not >= 1");
  if (offset == 1 && shape[0] > max_batch_size) {
    return BadInput(name, "batch ", shape[0], " exceeds max_batch_size ", max_batch_size);
  }
  for (int d = 0; d < tensor.dims_size(); ++d) {
    const int64_t want = tensor.dims(d);
    const int64_t dim = shape[d + offset];
    if (want == -1 ? dim < 1 : dim != want) return mismatch();
  }
  const std::optional<int64_t> elements = NumElements(shape);
  if (!elements.has_value()) return BadInput(name, "shape ", got, " has too many elements");
  return *elements;
}

// Validates and decodes request input `r` as config input `tensor` into `out`.
absl::Status DecodeInput(const ModelInferRequest& request, int r, const TensorConfig& tensor,
                         int32_t max_batch_size, DecodedInput* out) {
  const InputTensor& input = request.inputs(r);
  RETURN_IF_ERROR(CheckDatatype(input, tensor));
  std::vector<int64_t> shape(input.shape().begin(), input.shape().end());
  ASSIGN_OR_RETURN(const int64_t elements,
                   CheckShape(tensor.name(), shape, tensor, max_batch_size));

  out->data_type = tensor.data_type();
  out->view.name = tensor.name();
  out->view.shape = std::move(shape);
  // BYTES has no DType; its view stays empty and its dtype is never read.
  out->view.dtype = DTypeFromDataType(tensor.data_type()).value_or(DType::kUInt8);
  if (!request.raw_input_contents().empty()) {
    return DecodeRaw(request.raw_input_contents(r), elements, out);
  }
  if (!HasTypedContents(input.contents())) {
    return BadInput(tensor.name(), "no contents: neither raw_input_contents nor typed contents");
  }
  return DecodeTyped(input.contents(), elements, out);
}

// --- responses -----------------------------------------------------------------------------

const TensorView* FindOutput(const std::vector<TensorView>& outputs, absl::string_view name) {
  for (const TensorView& tensor : outputs) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

// Checks a backend output against the config and the request's batch size.
absl::Status CheckOutput(const ModelConfig& config, const TensorConfig& tensor,
                         const TensorView& produced, int64_t batch_size) {
  const std::optional<DType> dtype = DTypeFromDataType(tensor.data_type());
  if (!dtype.has_value()) {
    return BadOutput(tensor.name(), "kiln cannot return ", OipDatatypeName(tensor.data_type()),
                     " outputs");
  }
  if (produced.dtype != *dtype) {
    return BadOutput(tensor.name(), "the backend returned ", DTypeName(produced.dtype),
                     ", the model's config says ", OipDatatypeName(tensor.data_type()));
  }
  const std::string shape = ShapeString(produced.shape);
  if (config.max_batch_size() > 0 && (produced.shape.empty() || produced.shape[0] != batch_size)) {
    return BadOutput(tensor.name(), "the backend returned shape ", shape,
                     ", whose batch dim is not the request's batch ", batch_size);
  }
  const size_t offset = config.max_batch_size() > 0 ? 1 : 0;
  bool as_configured = produced.shape.size() == tensor.dims().size() + offset;
  for (int d = 0; as_configured && d < tensor.dims_size(); ++d) {
    const int64_t dim = produced.shape[d + offset];
    as_configured = tensor.dims(d) == -1 ? dim >= 0 : dim == tensor.dims(d);
  }
  if (!as_configured) {
    return BadOutput(tensor.name(), "the backend returned shape ", shape,
                     ", the model's config says ", ModelShapeText(tensor, config.max_batch_size()));
  }
  if (ByteSize(*dtype, produced.shape) != produced.nbytes) {
    return BadOutput(tensor.name(), "the backend returned ", produced.nbytes, " bytes for ",
                     DTypeName(*dtype), " ", shape);
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view OipDatatypeName(DataType type) {
  for (const OipName& entry : kOipNames) {
    if (entry.type == type) return entry.name;
  }
  return "INVALID";
}

std::optional<DataType> DataTypeFromOipName(absl::string_view name) {
  for (const OipName& entry : kOipNames) {
    if (entry.name == name) return entry.type;
  }
  return std::nullopt;
}

TensorConfig TextInputConfig(const ModelConfig& config) {
  TensorConfig text;
  text.set_name(config.tokenizer().text_input());
  text.set_data_type(TYPE_BYTES);
  text.add_dims(1);
  return text;
}

absl::StatusOr<DecodedRequest> DecodeInferRequest(const inference::ModelInferRequest& request,
                                                  const ModelConfig& config) {
  if (config.has_tokenizer()) {
    const std::string& text = config.tokenizer().text_input();
    const bool has_text =
        std::any_of(request.inputs().begin(), request.inputs().end(),
                    [&text](const InputTensor& input) { return input.name() == text; });
    if (has_text && request.inputs_size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat("send either the text input ", Quoted(text),
                                                     " alone or the token inputs ",
                                                     TensorNames(config.input()), ", not both"));
    }
    if (has_text) {
      // Decoded against the model as seen from the text side: one BYTES input of dims [1].
      ModelConfig text_model = config;
      text_model.clear_input();
      text_model.clear_tokenizer();
      *text_model.add_input() = TextInputConfig(config);
      absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, text_model);
      if (decoded.ok()) decoded->text = true;
      return decoded;
    }
  }
  ASSIGN_OR_RETURN(const std::vector<int> index, MatchInputs(request, config));
  RETURN_IF_ERROR(CheckContentsForm(request));

  DecodedRequest decoded;
  // Reserved so that no element moves: views may point into each input's `owned`.
  decoded.inputs.reserve(config.input_size());
  for (int c = 0; c < config.input_size(); ++c) {
    if (index[c] < 0) continue;  // an optional input left out
    const TensorConfig& tensor = config.input(c);
    DecodedInput& input = decoded.inputs.emplace_back();
    RETURN_IF_ERROR(DecodeInput(request, index[c], tensor, config.max_batch_size(), &input));
    if (config.max_batch_size() == 0) continue;
    const int64_t batch = input.view.shape[0];
    if (decoded.inputs.size() == 1) {
      decoded.batch_size = batch;
    } else if (batch != decoded.batch_size) {
      return BadInput(tensor.name(), "batch ", batch, " differs from batch ", decoded.batch_size,
                      " of input ", Quoted(decoded.inputs.front().view.name));
    }
  }

  RETURN_IF_ERROR(RequestedOutputs(request, config, decoded));
  ASSIGN_OR_RETURN(decoded.priority, SchedulingParameter(request, kPriorityParameter));
  ASSIGN_OR_RETURN(const uint64_t timeout_us, SchedulingParameter(request, kTimeoutParameter));
  decoded.timeout_us = static_cast<int64_t>(std::min<uint64_t>(timeout_us, INT64_MAX));
  return decoded;
}

ModelInferRequest BuildTextInferRequest(const ModelConfig& config, const std::string& version,
                                        const std::vector<std::string>& texts) {
  ModelInferRequest request;
  request.set_model_name(config.name());
  request.set_model_version(version);
  InputTensor& input = *request.add_inputs();
  input.set_name(config.tokenizer().text_input());
  input.set_datatype("BYTES");
  if (config.max_batch_size() > 0) input.add_shape(static_cast<int64_t>(texts.size()));
  input.add_shape(1);
  for (const std::string& text : texts) input.mutable_contents()->add_bytes_contents(text);
  return request;
}

absl::StatusOr<ModelInferRequest> BuildInferRequest(const std::string& model,
                                                    const std::string& version,
                                                    const std::vector<TensorView>& inputs) {
  ModelInferRequest request;
  request.set_model_name(model);
  request.set_model_version(version);
  for (const TensorView& view : inputs) {
    const std::optional<DataType> type = DataTypeFromDType(view.dtype);
    if (!type.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", view.name, "': dtype ", DTypeName(view.dtype), " has no OIP datatype"));
    }
    if (ByteSize(view.dtype, view.shape) != view.nbytes) {
      return absl::InvalidArgumentError(absl::StrCat("input '", view.name, "': ", view.nbytes,
                                                     " bytes do not match ", OipDatatypeName(*type),
                                                     " ", ShapeString(view.shape)));
    }
    if (view.data == nullptr && view.nbytes > 0) {
      return absl::InvalidArgumentError(absl::StrCat("input '", view.name, "': no data"));
    }
    InputTensor* input = request.add_inputs();
    input->set_name(view.name);
    input->set_datatype(std::string(OipDatatypeName(*type)));
    input->mutable_shape()->Add(view.shape.begin(), view.shape.end());
    request.add_raw_input_contents()->assign(static_cast<const char*>(view.data), view.nbytes);
  }
  return request;
}

absl::Status EncodeInferResponse(const ModelConfig& config, const std::string& model_version,
                                 const inference::ModelInferRequest& request,
                                 const DecodedRequest& decoded,
                                 const std::vector<TensorView>& outputs,
                                 inference::ModelInferResponse* response) {
  response->Clear();
  response->set_model_name(config.name());
  response->set_model_version(model_version);
  response->set_id(request.id());

  std::vector<std::string> names = decoded.outputs;
  if (names.empty()) {
    for (const TensorConfig& tensor : config.output()) names.push_back(tensor.name());
  }
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    const TensorConfig* tensor = FindTensor(config.output(), name);
    if (tensor == nullptr) return BadOutput(name, "not one of the model's outputs");
    const TensorView* produced = FindOutput(outputs, name);
    if (produced == nullptr) return BadOutput(name, "the backend did not return it");
    RETURN_IF_ERROR(CheckOutput(config, *tensor, *produced, decoded.batch_size));
    inference::ModelInferResponse::InferOutputTensor* out = response->add_outputs();
    out->set_name(name);
    const uint32_t classes = i < decoded.class_counts.size() ? decoded.class_counts[i] : 0;
    if (classes == 0) {
      out->set_datatype(std::string(OipDatatypeName(tensor->data_type())));
      out->mutable_shape()->Add(produced->shape.begin(), produced->shape.end());
      response->add_raw_output_contents(produced->data, produced->nbytes);
      continue;
    }
    const bool batched = config.max_batch_size() > 0;
    const int64_t rows = batched ? produced->shape[0] : 1;
    const std::vector<std::string> top = TopClasses(*produced, rows, classes, *tensor);
    out->set_datatype("BYTES");
    if (batched) out->add_shape(rows);
    out->add_shape(rows > 0 ? static_cast<int64_t>(top.size()) / rows : 0);
    std::string& raw = *response->add_raw_output_contents();
    raw.resize(BytesFormSize(top));
    WriteBytesForm(top, reinterpret_cast<uint8_t*>(raw.data()));
  }
  return absl::OkStatus();
}

void FillModelMetadata(const ModelConfig& config, const std::vector<std::string>& versions,
                       inference::ModelMetadataResponse* response) {
  response->Clear();
  response->set_name(config.name());
  for (const std::string& version : versions) response->add_versions(version);
  response->set_platform(config.platform());
  const auto fill = [&](const TensorConfig& tensor,
                        inference::ModelMetadataResponse::TensorMetadata* out) {
    out->set_name(tensor.name());
    out->set_datatype(std::string(OipDatatypeName(tensor.data_type())));
    const std::vector<int64_t> shape = ModelShape(tensor, config.max_batch_size());
    out->mutable_shape()->Add(shape.begin(), shape.end());
  };
  if (config.has_tokenizer()) fill(TextInputConfig(config), response->add_inputs());
  for (const TensorConfig& tensor : config.input()) fill(tensor, response->add_inputs());
  for (const TensorConfig& tensor : config.output()) fill(tensor, response->add_outputs());
}

bool WantsTiming(const inference::ModelInferRequest& request) {
  auto found = request.parameters().find(kTimingParameter);
  return found != request.parameters().end() && found->second.bool_param();
}

void AskForTiming(inference::ModelInferRequest* request) {
  (*request->mutable_parameters())[kTimingParameter].set_bool_param(true);
}

void SetTiming(const ComputeTiming& timing, inference::ModelInferResponse* response) {
  auto& parameters = *response->mutable_parameters();
  if (timing.compute_ms) parameters[kComputeMsParameter].set_double_param(*timing.compute_ms);
  if (timing.compute_cpu_ms) {
    parameters[kComputeCpuMsParameter].set_double_param(*timing.compute_cpu_ms);
  }
  parameters[kColdShapeParameter].set_bool_param(timing.cold_shape);
  if (timing.worker_pid) parameters[kWorkerPidParameter].set_int64_param(*timing.worker_pid);
  if (timing.ran_as) {
    parameters[kRanAsBatchParameter].set_int64_param(timing.ran_as->batch_size);
    parameters[kRanAsLengthParameter].set_int64_param(timing.ran_as->sequence_length);
  }
}

ComputeTiming ReadTiming(const inference::ModelInferResponse& response) {
  const auto& parameters = response.parameters();
  ComputeTiming timing;
  if (auto it = parameters.find(kComputeMsParameter); it != parameters.end()) {
    timing.compute_ms = it->second.double_param();
  }
  if (auto it = parameters.find(kComputeCpuMsParameter); it != parameters.end()) {
    timing.compute_cpu_ms = it->second.double_param();
  }
  if (auto it = parameters.find(kColdShapeParameter); it != parameters.end()) {
    timing.cold_shape = it->second.bool_param();
  }
  if (auto it = parameters.find(kWorkerPidParameter); it != parameters.end()) {
    timing.worker_pid = it->second.int64_param();
  }
  const auto batch = parameters.find(kRanAsBatchParameter);
  const auto length = parameters.find(kRanAsLengthParameter);
  if (batch != parameters.end() && length != parameters.end()) {
    timing.ran_as = Shape{static_cast<int32_t>(batch->second.int64_param()),
                          static_cast<int32_t>(length->second.int64_param())};
  }
  return timing;
}

}  // namespace kiln
