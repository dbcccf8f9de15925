#include "bench/infer_command.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/args.h"
#include "common/safetensors_writer.h"
#include "proto/grpc_service.grpc.pb.h"

namespace kiln::bench {
namespace {

constexpr size_t kSummaryValues = 8;

bool IsInteger(DType dtype) {
  switch (dtype) {
    case DType::kBool:
    case DType::kUInt8:
    case DType::kInt8:
    case DType::kUInt16:
    case DType::kInt16:
    case DType::kUInt32:
    case DType::kInt32:
    case DType::kUInt64:
    case DType::kInt64:
      return true;
    default:
      return false;
  }
}

// One element as text: integers exactly, floats with 6 significant digits.
std::string ElementText(DType dtype, const uint8_t* data, size_t i) {
  if (dtype == DType::kUInt64) {
    uint64_t value;
    std::memcpy(&value, data + i * sizeof(value), sizeof(value));
    return absl::StrCat(value);
  }
  if (dtype == DType::kInt64) {
    int64_t value;
    std::memcpy(&value, data + i * sizeof(value), sizeof(value));
    return absl::StrCat(value);
  }
  const double value = ElementAsDouble(dtype, data, i);
  if (IsInteger(dtype)) return absl::StrCat(static_cast<int64_t>(value));
  return absl::StrCat(value);
}

const char* kInferDescription =
    "Sends one ModelInfer request (Open Inference Protocol) and prints one line per output:\n"
    "name, datatype, shape, the first values and min/max/mean, then the round-trip latency.\n"
    "ModelMetadata tells which inputs to send. With --input they come from a safetensors file\n"
    "(tensor 'x' or 'input.x' for input x); otherwise (--random) from seeded data: floats\n"
    "uniform in [-1, 1), integers in [0, 100), BOOL 0/1, at shape [--batch, dims] with every\n"
    "other -1 dim set to --seq.\n"
    "Text models (a BYTES input in the metadata, e.g. 'text' of a model with a tokenizer) get\n"
    "text instead, in that input alone: --text, else a fixed English sample of --seq words, the\n"
    "same string in each of the --batch rows (shape [--batch, 1]); the server tokenizes it.\n"
    "With --input, a text model gets its token inputs from the file and no text.\n"
    "Exit status: 0 ok, 1 RPC or file error, 2 bad flags.";

}  // namespace

absl::StatusOr<std::vector<TensorView>> InputsFromSafetensors(const SafetensorsIndex& index,
                                                              const std::vector<InputSpec>& specs,
                                                              const std::string& source) {
  std::vector<TensorView> views;
  for (const InputSpec& spec : specs) {
    const SafetensorsTensor* tensor = index.Find(spec.name);
    if (tensor == nullptr) tensor = index.Find(absl::StrCat("input.", spec.name));
    if (tensor == nullptr) {
      std::vector<std::string> names;
      for (const SafetensorsTensor& t : index.tensors()) names.push_back(t.name);
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": no tensor '", spec.name, "' or 'input.", spec.name, "' for input '", spec.name,
          "' (the file holds: ", names.empty() ? "nothing" : absl::StrJoin(names, ", "), ")"));
    }
    const std::optional<DType> dtype = DTypeForOipDatatype(spec.datatype);
    if (!dtype) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", spec.name, "': datatype ", spec.datatype, " cannot come from safetensors"));
    }
    if (tensor->dtype != *dtype) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": tensor '", tensor->name, "' is ", DTypeName(tensor->dtype), ", input '",
          spec.name, "' is ", spec.datatype, " (", DTypeName(*dtype), ")"));
    }
    bool shape_ok = tensor->shape.size() == spec.shape.size();
    for (size_t i = 0; shape_ok && i < spec.shape.size(); ++i) {
      shape_ok = spec.shape[i] == -1 || spec.shape[i] == tensor->shape[i];
    }
    if (!shape_ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": tensor '", tensor->name, "' has shape ", ShapeString(tensor->shape),
          ", input '", spec.name, "' expects ", ShapeString(spec.shape)));
    }
    views.push_back({spec.name, tensor->dtype, tensor->shape, tensor->data, tensor->nbytes()});
  }
  return views;
}

std::string SummarizeTensor(const Tensor& tensor) {
  const std::optional<absl::string_view> datatype = OipDatatypeForDType(tensor.dtype);
  std::string line = absl::StrCat(tensor.name, " ", datatype ? *datatype : DTypeName(tensor.dtype),
                                  " ", ShapeString(tensor.shape));
  const size_t n = tensor.bytes.size() / DTypeSize(tensor.dtype);
  const uint8_t* data = tensor.bytes.data();
  std::vector<std::string> values;
  for (size_t i = 0; i < std::min(n, kSummaryValues); ++i) {
    values.push_back(ElementText(tensor.dtype, data, i));
  }
  if (n > kSummaryValues) values.push_back("...");
  absl::StrAppend(&line, " [", absl::StrJoin(values, ", "), "]");
  if (n == 0) return line;
  double min = std::numeric_limits<double>::infinity();
  double max = -min;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    const double value = ElementAsDouble(tensor.dtype, data, i);
    min = std::min(min, value);
    max = std::max(max, value);
    sum += value;
  }
  absl::StrAppend(&line, " min=", min, " max=", max, " mean=", sum / static_cast<double>(n));
  return line;
}

int RunInferCommand(const std::vector<std::string>& args) {
  std::string addr = "127.0.0.1:8001";
  std::string model;
  std::string version;
  std::string input_path;
  bool random = false;
  int64_t batch = 1;
  int64_t seq = 16;
  int64_t seed = 0;
  int64_t timeout_ms = 10000;
  std::string output_path;
  std::string text;

  FlagSet flags(
      "kiln-bench infer --model=NAME [--input=FILE.safetensors | --random | --text=TEXT] [flags]",
      kInferDescription,
      {"kiln-bench infer --model=mlp --batch=4",
       "kiln-bench infer --model=textcls --text=\"the service scales out\" --batch=2",
       "kiln-bench infer --model=textcls --batch=4 --seq=64",
       "kiln-bench infer --model=resnet18 --input=models/resnet18/1/reference.safetensors"
       " --output=/tmp/out.safetensors"});
  flags.AddString("addr", &addr, "server address, host:port");
  flags.AddString("model", &model, "model name (required)");
  flags.AddString("version", &version, "model version; empty = the server's choice");
  flags.AddString("input", &input_path, "safetensors file with the inputs");
  flags.AddBool("random", &random,
                "seeded random inputs, or text for a text model (the default without --input)");
  flags.AddInt("batch", &batch, "batch size (the leading -1 dim); text models: rows of text");
  flags.AddInt("seq", &seq, "random inputs: every other -1 dim; text models: words of sample text");
  flags.AddInt("seed", &seed, "random inputs: seed");
  flags.AddString("text", &text,
                  "text models: the text of every row (default: sample text of --seq words)");
  flags.AddInt("timeout_ms", &timeout_ms, "deadline of each RPC, in milliseconds");
  flags.AddString("output", &output_path, "write the outputs to this safetensors file");
  if (std::optional<int> exit = ParseFlagsOrExit(&flags, "infer", args, std::cout, std::cerr)) {
    return *exit;
  }
  std::string problem;
  if (model.empty()) {
    problem = "--model is required";
  } else if (!input_path.empty() && random) {
    problem = "--input and --random exclude each other";
  } else if (!input_path.empty() && flags.WasSet("text")) {
    problem = "--input and --text exclude each other";
  } else if (batch < 1 || seq < 1) {
    problem = "--batch and --seq must be >= 1";
  } else if (timeout_ms < 1) {
    problem = "--timeout_ms must be >= 1";
  } else if (seed < 0) {
    problem = "--seed must be >= 0";
  }
  if (!problem.empty()) {
    std::cerr << "kiln-bench infer: " << problem
              << "\nrun 'kiln-bench infer --help' for its flags\n";
    return kExitUsage;
  }

  const absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ConnectChannel(addr);
  if (!channel.ok()) {
    std::cerr << "kiln-bench: " << channel.status().message() << "\n";
    return kExitFailure;
  }
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(*channel);

  absl::StatusOr<inference::ModelMetadataResponse> metadata =
      FetchModelMetadata(*stub, model, version, timeout_ms);
  if (!metadata.ok()) {
    std::cerr << "kiln-bench: " << metadata.status().message() << "\n";
    return kExitFailure;
  }

  std::unique_ptr<MappedSafetensors> file;
  absl::StatusOr<inference::ModelInferRequest> request;
  if (!input_path.empty()) {
    absl::StatusOr<std::unique_ptr<MappedSafetensors>> opened = MappedSafetensors::Open(input_path);
    if (!opened.ok()) {
      std::cerr << "kiln-bench: " << opened.status().message() << "\n";
      return kExitFailure;
    }
    file = std::move(*opened);
    // A text model's token inputs come from the file; its text input has no tensor form.
    std::vector<InputSpec> specs = InputSpecsFromMetadata(*metadata);
    if (const std::optional<size_t> text_input = FindTextInput(specs)) {
      specs.erase(specs.begin() + static_cast<std::ptrdiff_t>(*text_input));
    }
    absl::StatusOr<std::vector<TensorView>> views =
        InputsFromSafetensors(file->index(), specs, input_path);
    if (!views.ok()) {
      std::cerr << "kiln-bench: " << views.status().message() << "\n";
      return kExitFailure;
    }
    for (const TensorView& view : *views) {
      std::cout << "input  " << view.name << " " << *OipDatatypeForDType(view.dtype) << " "
                << ShapeString(view.shape) << " (from " << input_path << ")\n";
    }
    request = BuildInferRequest(model, version, *views);
  } else {
    SyntheticRequestOptions options;
    options.batch = batch;
    options.seq = seq;
    options.seed = static_cast<uint64_t>(seed);
    if (flags.WasSet("text")) options.text = text;
    absl::StatusOr<SyntheticRequest> synthetic =
        BuildSyntheticRequest(*metadata, model, version, options);
    if (!synthetic.ok()) {
      std::cerr << "kiln-bench: " << synthetic.status().message() << "\n";
      return kExitFailure;
    }
    for (const std::string& input : synthetic->inputs) {
      std::cout << "input  " << input << " (" << synthetic->origin << ")\n";
    }
    request = std::move(synthetic->request);
  }
  if (!request.ok()) {
    std::cerr << "kiln-bench: " << request.status().message() << "\n";
    return kExitFailure;
  }
  inference::ModelInferResponse response;
  grpc::ClientContext context;
  SetTimeout(&context, timeout_ms);
  const auto start = std::chrono::steady_clock::now();
  const grpc::Status status = stub->ModelInfer(&context, *request, &response);
  const std::chrono::duration<double, std::milli> latency =
      std::chrono::steady_clock::now() - start;
  if (!status.ok()) {
    std::cerr << "kiln-bench: ModelInfer failed: " << FormatGrpcStatus(status) << "\n";
    return kExitFailure;
  }
  absl::StatusOr<std::vector<Tensor>> outputs = DecodeInferResponse(response);
  if (!outputs.ok()) {
    std::cerr << "kiln-bench: " << outputs.status().message() << "\n";
    return kExitFailure;
  }
  for (const Tensor& tensor : *outputs) std::cout << "output " << SummarizeTensor(tensor) << "\n";
  char latency_text[32];
  std::snprintf(latency_text, sizeof(latency_text), "%.3f", latency.count());
  std::cout << "latency " << latency_text << " ms (ModelInfer round trip, " << response.model_name()
            << " version " << response.model_version() << ")\n";

  if (!output_path.empty()) {
    std::vector<TensorView> views;
    for (const Tensor& tensor : *outputs) views.push_back(tensor.view());
    const absl::Status written = WriteSafetensorsFile(
        output_path, views,
        {{"generator", "kiln-bench"}, {"model", model}, {"version", response.model_version()}});
    if (!written.ok()) {
      std::cerr << "kiln-bench: " << written.message() << "\n";
      return kExitFailure;
    }
    std::cout << "wrote " << outputs->size() << " output(s) to " << output_path << "\n";
  }
  return kExitOk;
}

}  // namespace kiln::bench
