// The only translation unit of kiln that includes LibTorch headers.
#include "worker/torch_model.h"

#include <ATen/Parallel.h>
#include <malloc.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/version.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/fork_safety.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "glog/logging.h"

namespace kiln {

const char* LibTorchVersion() { return TORCH_VERSION; }

struct TorchModel::Module {
  torch::jit::Module module;
  torch::Device device = torch::kCPU;
};

namespace {

std::optional<c10::ScalarType> ToScalarType(DType dtype) {
  switch (dtype) {
    case DType::kBool:
      return c10::ScalarType::Bool;
    case DType::kUInt8:
      return c10::ScalarType::Byte;
    case DType::kInt8:
      return c10::ScalarType::Char;
    case DType::kInt16:
      return c10::ScalarType::Short;
    case DType::kInt32:
      return c10::ScalarType::Int;
    case DType::kInt64:
      return c10::ScalarType::Long;
    case DType::kFloat16:
      return c10::ScalarType::Half;
    case DType::kBFloat16:
      return c10::ScalarType::BFloat16;
    case DType::kFloat32:
      return c10::ScalarType::Float;
    case DType::kFloat64:
      return c10::ScalarType::Double;
    default:
      return std::nullopt;  // unsigned > 8 bits, 8-bit floats: not in LibTorch 1.13
  }
}

std::optional<DType> FromScalarType(c10::ScalarType type) {
  switch (type) {
    case c10::ScalarType::Bool:
      return DType::kBool;
    case c10::ScalarType::Byte:
      return DType::kUInt8;
    case c10::ScalarType::Char:
      return DType::kInt8;
    case c10::ScalarType::Short:
      return DType::kInt16;
    case c10::ScalarType::Int:
      return DType::kInt32;
    case c10::ScalarType::Long:
      return DType::kInt64;
    case c10::ScalarType::Half:
      return DType::kFloat16;
    case c10::ScalarType::BFloat16:
      return DType::kBFloat16;
    case c10::ScalarType::Float:
      return DType::kFloat32;
    case c10::ScalarType::Double:
      return DType::kFloat64;
    default:
      return std::nullopt;
  }
}

std::string Describe(const torch::Tensor& t) {
  return absl::StrCat(c10::toString(t.scalar_type()), " ", ShapeString(t.sizes().vec()));
}

std::string Describe(const SafetensorsTensor& t) {
  return absl::StrCat(DTypeName(t.dtype), " ", ShapeString(t.shape));
}

// Every parameter and buffer of the module by name; names are unique in a TorchScript module.
std::map<std::string, torch::Tensor> NamedTensors(const torch::jit::Module& module) {
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) tensors[p.name] = p.value;
  for (const auto& b : module.named_buffers(/*recurse=*/true)) tensors[b.name] = b.value;
  return tensors;
}

// Points every tensor of `module` at its bytes in `weights` (or a heap copy of them when they
// are misaligned). Checks names, dtypes and shapes both ways before changing anything.
absl::Status Rebind(torch::jit::Module& module, const MappedSafetensors& weights,
                    const std::string& model_path, TorchModelLoadStats& stats) {
  std::map<std::string, torch::Tensor> tensors = NamedTensors(module);
  const std::string& file = weights.path();
  for (const auto& [name, tensor] : tensors) {
    const SafetensorsTensor* stored = weights.index().Find(name);
    if (stored == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": no tensor '", name, "', which ",
                                                     model_path, " has (", Describe(tensor), ")"));
    }
    const std::optional<c10::ScalarType> type = ToScalarType(stored->dtype);
    if (type != tensor.scalar_type() || stored->shape != tensor.sizes().vec()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", name, "' is ",
                                                     Describe(*stored), " but ", model_path,
                                                     " expects ", Describe(tensor)));
    }
  }
  for (const SafetensorsTensor& stored : weights.index().tensors()) {
    if (tensors.count(stored.name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", stored.name, "' (",
                                                     Describe(stored),
                                                     ") is not a parameter or "
                                                     "buffer of ",
                                                     model_path));
    }
  }
  for (auto& [name, tensor] : tensors) {
    const SafetensorsTensor& stored = *weights.index().Find(name);
    const auto options = torch::TensorOptions().dtype(tensor.scalar_type());
    torch::Tensor view;
    if (stored.aligned) {
      // The mapping is PROT_READ: a write through this view faults instead of un-sharing.
      view = torch::from_blob(const_cast<uint8_t*>(stored.data), stored.shape, options);
      ++stats.tensors_rebound;
    } else {
      view = torch::empty(stored.shape, options);
      std::memcpy(view.data_ptr(), stored.data, stored.nbytes());
      ++stats.tensors_copied;
    }
    tensor.set_data(view);
  }
  LOG_IF(WARNING, stats.tensors_copied > 0)
      << file << ": " << stats.tensors_copied
      << " tensor(s) misaligned for their dtype were copied to the heap instead of shared";
  return absl::OkStatus();
}

// Converts forward()'s result into tensors; `expected` is the config's output count. A result
// that does not match the config is Internal: the model broke its contract, not the caller.
absl::StatusOr<std::vector<torch::Tensor>> OutputTensors(const c10::IValue& result,
                                                         size_t expected) {
  std::vector<torch::Tensor> outputs;
  if (result.isTensor()) {
    outputs.push_back(result.toTensor());
  } else if (result.isTuple() || result.isList()) {
    const std::vector<c10::IValue> items =
        result.isTuple() ? result.toTupleRef().elements().vec() : result.toListRef().vec();
    for (const c10::IValue& item : items) {
      if (!item.isTensor()) {
        return absl::InternalError(absl::StrCat("forward() returned a ", item.tagKind(),
                                                " among its outputs; expected "
                                                "only tensors"));
      }
      outputs.push_back(item.toTensor());
    }
  } else {
    return absl::InternalError(absl::StrCat("forward() returned a ", result.tagKind(),
                                            "; expected a tensor or a tuple of tensors"));
  }
  if (outputs.size() != expected) {
    return absl::InternalError(absl::StrCat("forward() returned ", outputs.size(),
                                            " tensors; the config declares ", expected,
                                            " outputs"));
  }
  return outputs;
}

// An input LibTorch can view: a supported dtype, and bytes that hold its shape exactly.
absl::Status CheckInput(const TensorView& input) {
  if (!ToScalarType(input.dtype).has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("input '", input.name, "': dtype ",
                                                   DTypeName(input.dtype),
                                                   " is not supported by LibTorch"));
  }
  if (ByteSize(input.dtype, input.shape) != input.nbytes) {
    return absl::InvalidArgumentError(absl::StrCat("input '", input.name, "': ", input.nbytes,
                                                   " bytes do not hold ", DTypeName(input.dtype),
                                                   " ", ShapeString(input.shape)));
  }
  return absl::OkStatus();
}

// Copies one output to host memory as a kiln::Tensor named `name`.
absl::StatusOr<Tensor> ToHostTensor(const torch::Tensor& output, const std::string& name) {
  const torch::Tensor out = output.to(torch::kCPU).contiguous();
  const std::optional<DType> dtype = FromScalarType(out.scalar_type());
  if (!dtype.has_value()) {
    return absl::InternalError(absl::StrCat("output '", name, "' has dtype ",
                                            c10::toString(out.scalar_type()),
                                            ", which kiln cannot return"));
  }
  Tensor tensor;
  tensor.name = name;
  tensor.dtype = *dtype;
  tensor.shape = out.sizes().vec();
  const auto* bytes = static_cast<const uint8_t*>(out.data_ptr());
  tensor.bytes.assign(bytes, bytes + out.nbytes());
  return tensor;
}

}  // namespace

TorchModel::TorchModel(ModelSpec spec, std::shared_ptr<const MappedSafetensors> weights,
                       std::unique_ptr<Module> module, TorchModelLoadStats stats)
    : spec_(std::move(spec)),
      weights_(std::move(weights)),
      module_(std::move(module)),
      stats_(stats) {}

TorchModel::~TorchModel() = default;

absl::StatusOr<std::unique_ptr<TorchModel>> TorchModel::Load(const ModelSpec& spec,
                                                             bool map_weights) {
  TorchModelLoadStats stats;
  std::shared_ptr<const MappedSafetensors> weights;
  if (map_weights && !spec.weights_path.empty()) {
    const auto start = std::chrono::steady_clock::now();
    ASSIGN_OR_RETURN(weights, MappedSafetensors::Open(spec.weights_path));
    weights->Prefetch();
    stats.mapped_bytes = weights->size();
    stats.map_ms = MillisecondsSince(start);
  }
  auto module = std::make_unique<Module>();
  try {
    auto start = std::chrono::steady_clock::now();
    module->module = torch::jit::load(spec.model_path, torch::kCPU);
    module->module.eval();
    stats.load_ms = MillisecondsSince(start);
    if (weights != nullptr) {
      start = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(Rebind(module->module, *weights, spec.model_path, stats));
      malloc_trim(0);  // hand the heap copy torch::jit::load made back to the system
      stats.rebind_ms = MillisecondsSince(start);
    }
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(spec.model_path, ": cannot load TorchScript: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(spec.model_path, ": cannot load TorchScript: ", e.what()));
  }
  return std::unique_ptr<TorchModel>(
      new TorchModel(spec, std::move(weights), std::move(module), stats));
}

void TorchModel::SetIntraOpThreads(int threads) { at::set_num_threads(threads); }

int TorchModel::IntraOpThreads() { return at::get_num_threads(); }

absl::Status TorchModel::UseCudaDevice(int index) {
  NoteCudaCall();
  try {
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(
          "kind: KIND_GPU, but this LibTorch build has no CUDA or no GPU is visible");
    }
    const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
    if (index < 0 || index >= count) {
      return absl::FailedPreconditionError(
          absl::StrCat("CUDA device ", index, " does not exist (", count, " visible)"));
    }
    module_->device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
    module_->module.to(module_->device);
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("moving the model to cuda:", index, ": ", e.what()));
  }
}

std::string TorchModel::DeviceName() const { return module_->device.str(); }

absl::StatusOr<std::vector<Tensor>> TorchModel::Forward(const std::vector<TensorView>& inputs) {
  NoteForwardPass(at::get_num_threads());
  const ModelConfig& config = spec_.config;
  if (inputs.size() != static_cast<size_t>(config.input_size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        config.name(), ": forward needs ", config.input_size(), " inputs, got ", inputs.size()));
  }
  for (const TensorView& input : inputs) {
    RETURN_IF_ERROR(CheckInput(input));
  }
  try {
    torch::NoGradGuard no_grad;
    std::vector<c10::IValue> args;
    args.reserve(inputs.size());
    for (const TensorView& input : inputs) {
      torch::Tensor tensor =
          torch::from_blob(const_cast<void*>(input.data), input.shape,
                           torch::TensorOptions().dtype(*ToScalarType(input.dtype)));
      args.emplace_back(module_->device.is_cpu() ? tensor : tensor.to(module_->device));
    }
    const c10::IValue result = module_->module.forward(std::move(args));
    absl::StatusOr<std::vector<torch::Tensor>> outputs =
        OutputTensors(result, static_cast<size_t>(config.output_size()));
    if (!outputs.ok()) return Annotate(outputs.status(), config.name());
    std::vector<Tensor> converted;
    converted.reserve(outputs->size());
    for (size_t i = 0; i < outputs->size(); ++i) {
      absl::StatusOr<Tensor> tensor =
          ToHostTensor((*outputs)[i], config.output(static_cast<int>(i)).name());
      if (!tensor.ok()) return Annotate(tensor.status(), config.name());
      converted.push_back(*std::move(tensor));
    }
    return converted;
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat(config.name(), ": forward failed: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(config.name(), ": forward failed: ", e.what()));
  }
}

std::vector<TensorView> TorchModel::Parameters() const {
  std::vector<TensorView> views;
  for (const auto& [name, tensor] : NamedTensors(module_->module)) {
    TensorView& view = views.emplace_back();
    view.name = name;
    view.dtype = FromScalarType(tensor.scalar_type()).value_or(DType::kUInt8);
    view.shape = tensor.sizes().vec();
    view.data = tensor.data_ptr();
    view.nbytes = tensor.nbytes();
  }
  return views;
}

}  // namespace kiln
