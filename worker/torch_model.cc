// The only translation unit of kiln that includes LibTorch headers.
#include "worker/torch_model.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <malloc.h>
#include <torch/csrc/jit/passes/tensorexpr_fuser.h>
#include <torch/csrc/jit/python/update_graph_executor_opt.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "common/fork_safety.h"
#include "common/shape.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "glog/logging.h"

namespace kiln {

const char* LibTorchVersion() { return TORCH_VERSION; }

namespace {

// How the config's tensors meet forward(), as Triton's PyTorch backend binds them; computed once
// by Load from forward()'s schema (BindInputs, BindOutputs).
struct ForwardBinding {
  // Config input i is forward()'s argument argument_of_input[i] (0 = the first after self).
  std::vector<size_t> argument_of_input;
  // What forward() is passed for config input i when a request leaves it out (optional inputs
  // only): the argument's default, else None.
  std::vector<c10::IValue> value_when_absent;
  // forward() is passed its first `arguments` arguments, every one bound; the rest (all with a
  // default) keep their defaults.
  size_t arguments = 0;
  // Config output i is element element_of_output[i] of a tuple or list result: its <index> when
  // every output is named <name>__<index>, else i. A dict result is looked up by output name.
  std::vector<size_t> element_of_output;
  bool outputs_by_index = false;
};

}  // namespace

struct TorchModel::Module {
  torch::jit::Module module;
  torch::Device device = torch::kCPU;
  ForwardBinding binding;
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

// The <index> of a name that follows Triton's <name>__<index> convention (decimal digits after
// the last "__"), or nullopt.
std::optional<size_t> ConventionIndex(const std::string& name) {
  const size_t at = name.rfind("__");
  if (at == std::string::npos) return std::nullopt;
  const std::string digits = name.substr(at + 2);
  if (digits.empty() || digits.size() > 9) return std::nullopt;
  for (const char c : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  return static_cast<size_t>(std::stoul(digits));  // at most 9 digits: no overflow
}

std::string Quoted(const std::string& name) { return absl::StrCat("'", name, "'"); }

// "forward(a, b=None)": how errors name forward()'s arguments (those after self).
std::string Signature(const std::vector<c10::Argument>& arguments) {
  return absl::StrCat("forward(",
                      absl::StrJoin(arguments, ", ",
                                    [](std::string* out, const c10::Argument& argument) {
                                      absl::StrAppend(out, argument.name(),
                                                      argument.default_value() ? "=..." : "");
                                    }),
                      ")");
}

// Binds the config's inputs to forward()'s `arguments` (those after self), as Triton's PyTorch
// backend does: by forward()'s argument names when every input is one of them, else by the
// <name>__<index> convention when every input follows it, else in the config's order. Errors
// name `model_path`.
absl::Status BindInputs(const ModelConfig& config, const std::vector<c10::Argument>& arguments,
                        const std::string& model_path, ForwardBinding& binding) {
  const std::string signature = Signature(arguments);
  const auto invalid = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(model_path, ": ", what));
  };
  std::map<std::string, size_t> by_name;
  for (size_t a = 0; a < arguments.size(); ++a) by_name[arguments[a].name()] = a;
  bool all_arguments = true;  // every input is named after an argument of forward()
  bool all_indexed = true;    // every input is named <name>__<index>
  for (const TensorConfig& input : config.input()) {
    all_arguments = all_arguments && by_name.count(input.name()) > 0;
    all_indexed = all_indexed && ConventionIndex(input.name()).has_value();
  }
  // Triton's rules in its order: forward()'s argument names, then <name>__<index>, else the
  // config's order (logged: a reordered config then feeds the wrong arguments).
  const bool by_argument_name = all_arguments;
  const bool by_config_order = !all_arguments && !all_indexed;
  LOG_IF(WARNING, by_config_order)
      << model_path << ": the config's inputs are neither all named after the arguments of "
      << signature << " nor all named <name>__<index>: they are bound in the config's order";
  std::vector<const TensorConfig*> bound(arguments.size(), nullptr);
  binding.argument_of_input.clear();
  binding.value_when_absent.clear();
  for (const TensorConfig& input : config.input()) {
    const size_t a = by_config_order    ? binding.argument_of_input.size()
                     : by_argument_name ? by_name[input.name()]
                                        : *ConventionIndex(input.name());
    if (a >= arguments.size()) {
      return invalid(absl::StrCat("input ", Quoted(input.name()), " is bound to argument ", a,
                                  " of ", signature, ", which takes ", arguments.size(),
                                  " (<name>__<index> counts from 0, after self)"));
    }
    if (bound[a] != nullptr) {
      return invalid(absl::StrCat("inputs ", Quoted(bound[a]->name()), " and ",
                                  Quoted(input.name()), " are both bound to argument ", a, " (",
                                  arguments[a].name(), ") of ", signature));
    }
    if (!c10::TensorType::get()->isSubtypeOf(*arguments[a].type())) {
      return invalid(absl::StrCat("input ", Quoted(input.name()), " is bound to argument ",
                                  Quoted(arguments[a].name()), " of ", signature, ", which is a ",
                                  arguments[a].type()->annotation_str(), ", not a Tensor"));
    }
    const c10::optional<c10::IValue>& fallback = arguments[a].default_value();
    if (input.optional() && !fallback.has_value() &&
        !c10::NoneType::get()->isSubtypeOf(*arguments[a].type())) {
      return invalid(
          absl::StrCat("input ", Quoted(input.name()), " is optional, but argument ",
                       Quoted(arguments[a].name()), " of ", signature,
                       " takes no None and has no default: declare it Optional[Tensor] (= None)"));
    }
    bound[a] = &input;
    binding.argument_of_input.push_back(a);
    binding.value_when_absent.push_back(fallback.value_or(c10::IValue()));
  }
  // Arguments are passed by position: those up to the last bound one must all be bound.
  binding.arguments = 0;
  for (size_t a = 0; a < arguments.size(); ++a) {
    if (bound[a] != nullptr) binding.arguments = a + 1;
  }
  for (size_t a = 0; a < arguments.size(); ++a) {
    if (bound[a] != nullptr) continue;
    if (!arguments[a].default_value()) {
      return invalid(absl::StrCat("argument ", Quoted(arguments[a].name()), " of ", signature,
                                  " has no default, and no input of the config is bound to it"));
    }
    if (a < binding.arguments) {
      return invalid(absl::StrCat(
          "argument ", Quoted(arguments[a].name()), " of ", signature,
          " is bound to no input, but a later argument is: only trailing arguments may be left "
          "to their defaults (arguments are passed by position)"));
    }
  }
  return absl::OkStatus();
}

// Config output i is element <index> of forward()'s result when every output is named
// <name>__<index>, else element i (Triton's rules); a dict result is looked up by name instead.
absl::Status BindOutputs(const ModelConfig& config, const std::string& model_path,
                         ForwardBinding& binding) {
  binding.outputs_by_index = true;
  for (const TensorConfig& output : config.output()) {
    if (!ConventionIndex(output.name()).has_value()) binding.outputs_by_index = false;
  }
  binding.element_of_output.clear();
  std::map<size_t, const std::string*> taken;
  for (int i = 0; i < config.output_size(); ++i) {
    const std::string& name = config.output(i).name();
    const size_t element = binding.outputs_by_index ? *ConventionIndex(name) : i;
    if (const auto [it, fresh] = taken.emplace(element, &name); !fresh) {
      return absl::InvalidArgumentError(absl::StrCat(model_path, ": outputs ", Quoted(*it->second),
                                                     " and ", Quoted(name), " are both element ",
                                                     element, " of forward()'s result"));
    }
    binding.element_of_output.push_back(element);
  }
  return absl::OkStatus();
}

// Picks the config's outputs out of forward()'s result (ForwardBinding), in the config's order.
// A result that does not match the config is Internal: the model broke its contract, not the
// caller.
absl::StatusOr<std::vector<torch::Tensor>> OutputTensors(const c10::IValue& result,
                                                         const ModelConfig& config,
                                                         const ForwardBinding& binding) {
  const auto tensor_or_error = [](const c10::IValue& item,
                                  const std::string& name) -> absl::StatusOr<torch::Tensor> {
    if (!item.isTensor()) {
      return absl::InternalError(absl::StrCat("forward() returned a ", item.tagKind(),
                                              " for output ", Quoted(name), "; expected a tensor"));
    }
    return item.toTensor();
  };
  std::vector<torch::Tensor> outputs;
  if (result.isGenericDict()) {
    const c10::Dict<c10::IValue, c10::IValue> dict = result.toGenericDict();
    for (const TensorConfig& output : config.output()) {
      const auto found = dict.find(c10::IValue(output.name()));
      if (found == dict.end()) {
        std::vector<std::string> keys;
        for (const auto& entry : dict) {
          keys.push_back(entry.key().isString() ? entry.key().toStringRef()
                                                : entry.key().tagKind());
        }
        return absl::InternalError(absl::StrCat(
            "forward() returned a dict without the key ", Quoted(output.name()), " (keys: ",
            absl::StrJoin(keys, ", "), "); a dict result holds each output under its name"));
      }
      ASSIGN_OR_RETURN(outputs.emplace_back(), tensor_or_error(found->value(), output.name()));
    }
    return outputs;
  }
  std::vector<c10::IValue> items;
  if (result.isTensor()) {
    items.push_back(result);  // output 0
  } else if (result.isTuple() || result.isList()) {
    items = result.isTuple() ? result.toTupleRef().elements().vec() : result.toListRef().vec();
  } else {
    return absl::InternalError(
        absl::StrCat("forward() returned a ", result.tagKind(),
                     "; expected a tensor, a tuple or list of tensors, or a dict of them"));
  }
  if (!binding.outputs_by_index && items.size() != static_cast<size_t>(config.output_size())) {
    return absl::InternalError(absl::StrCat("forward() returned ", items.size(),
                                            " tensors; the config declares ", config.output_size(),
                                            " outputs"));
  }
  for (int i = 0; i < config.output_size(); ++i) {
    const std::string& name = config.output(i).name();
    const size_t element = binding.element_of_output[i];
    if (element >= items.size()) {
      return absl::InternalError(absl::StrCat("output ", Quoted(name), " is element ", element,
                                              " of forward()'s result, which has ", items.size()));
    }
    ASSIGN_OR_RETURN(outputs.emplace_back(), tensor_or_error(items[element], name));
  }
  return outputs;
}

// The shape a tensor of `rows` rows (-1: no batch dimension) takes: `shape` with the batch
// dimension in front when there is one. Torch's reshape infers a -1 in it.
std::vector<int64_t> WithBatch(int64_t rows,
                               const google::protobuf::RepeatedField<int64_t>& shape) {
  std::vector<int64_t> full;
  if (rows >= 0) full.push_back(rows);
  full.insert(full.end(), shape.begin(), shape.end());
  return full;
}

// A reshape Forward can resolve: at most one -1 in the shape it reshapes to (an input's
// reshape.shape, an output's dims), as torch's reshape infers one.
absl::Status CheckReshapes(const ModelConfig& config, const std::string& model_path) {
  const auto check = [&](const TensorConfig& tensor, const char* kind, const char* field,
                         const google::protobuf::RepeatedField<int64_t>& shape) {
    if (!tensor.has_reshape() || std::count(shape.begin(), shape.end(), -1) <= 1) {
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(
        absl::StrCat(model_path, ": ", kind, " ", Quoted(tensor.name()), " is reshaped to ", field,
                     " ", ShapeString(std::vector<int64_t>(shape.begin(), shape.end())),
                     ", which has more than one -1: only one dimension can be inferred"));
  };
  for (const TensorConfig& input : config.input()) {
    RETURN_IF_ERROR(check(input, "input", "reshape", input.reshape().shape()));
  }
  for (const TensorConfig& output : config.output()) {
    RETURN_IF_ERROR(check(output, "output", "dims", output.dims()));
  }
  return absl::OkStatus();
}

// The process-global TorchScript switches of the PyTorch backend (TorchOptions), set for one
// forward pass and restored after it. Like Triton's backend, which sets them before every
// execution, they are set on every pass: the graph executor reads them when forward() first runs
// and on every later run, and graph optimisation is a thread-local switch, set on the thread
// that runs the pass.
class ScopedJitOptions {
 public:
  explicit ScopedJitOptions(const TorchOptions& options)
      : executor_(torch::jit::getExecutorMode().exchange(options.jit_executor())),
        profiling_(torch::jit::getProfilingMode().exchange(options.jit_profiling())),
        fuser_(torch::jit::tensorExprFuserEnabled()),
        optimize_(torch::jit::getGraphExecutorOptimize()) {
    torch::jit::setTensorExprFuserEnabled(options.tensor_fuser());
    torch::jit::setGraphExecutorOptimize(!options.disable_optimized_execution());
  }
  ~ScopedJitOptions() {
    torch::jit::getExecutorMode() = executor_;
    torch::jit::getProfilingMode() = profiling_;
    torch::jit::setTensorExprFuserEnabled(fuser_);
    torch::jit::setGraphExecutorOptimize(optimize_);
  }
  ScopedJitOptions(const ScopedJitOptions&) = delete;
  ScopedJitOptions& operator=(const ScopedJitOptions&) = delete;

 private:
  const bool executor_;
  const bool profiling_;
  const bool fuser_;
  const bool optimize_;
};

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
    const c10::optional<torch::jit::Method> forward = module->module.find_method("forward");
    if (!forward.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(spec.model_path, ": the TorchScript module has no forward() method"));
    }
    const std::vector<c10::Argument>& schema = forward->function().getSchema().arguments();
    const std::vector<c10::Argument> arguments(schema.begin() + (schema.empty() ? 0 : 1),
                                               schema.end());  // after self
    RETURN_IF_ERROR(BindInputs(spec.config, arguments, spec.model_path, module->binding));
    RETURN_IF_ERROR(BindOutputs(spec.config, spec.model_path, module->binding));
    RETURN_IF_ERROR(CheckReshapes(spec.config, spec.model_path));
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
  // Config input c is inputs[given_as[c]], or absent (-1): optional, and left out.
  const InputMatch match = MatchInputs(config, inputs);
  if (!match.missing.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config.name(), ": forward needs input '", match.missing, "'"));
  }
  if (!match.unexpected.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config.name(), ": input '", match.unexpected,
                     "' is none of the config's inputs, or out of their order"));
  }
  const std::vector<int>& given_as = match.given_as;
  for (const TensorView& input : inputs) RETURN_IF_ERROR(CheckInput(input));
  const bool batched = config.max_batch_size() > 0;
  const ForwardBinding& binding = module_->binding;
  try {
    const ScopedJitOptions jit(config.torch());
    std::optional<c10::InferenceMode> inference_mode;
    std::optional<torch::NoGradGuard> no_grad;
    if (config.torch().inference_mode()) {
      inference_mode.emplace();
    } else {
      no_grad.emplace();
    }
    std::vector<c10::IValue> args(binding.arguments);
    for (int i = 0; i < config.input_size(); ++i) {
      if (given_as[i] < 0) {
        args[binding.argument_of_input[i]] = binding.value_when_absent[i];
        continue;
      }
      const TensorView& input = inputs[given_as[i]];
      const TensorConfig& input_config = config.input(i);
      torch::Tensor tensor =
          torch::from_blob(const_cast<void*>(input.data), input.shape,
                           torch::TensorOptions().dtype(*ToScalarType(input.dtype)));
      if (input_config.has_reshape()) {
        if (batched && input.shape.empty()) {
          return absl::InvalidArgumentError(absl::StrCat(config.name(), ": input '", input.name,
                                                         "' has no batch dimension to keep"));
        }
        // A view of the same bytes (from_blob is contiguous).
        tensor = tensor.reshape(
            WithBatch(batched ? input.shape[0] : -1, input_config.reshape().shape()));
      }
      args[binding.argument_of_input[i]] =
          module_->device.is_cpu() ? tensor : tensor.to(module_->device);
    }
    const c10::IValue result = module_->module.forward(std::move(args));
    absl::StatusOr<std::vector<torch::Tensor>> outputs = OutputTensors(result, config, binding);
    if (!outputs.ok()) return Annotate(outputs.status(), config.name());
    std::vector<Tensor> converted;
    converted.reserve(outputs->size());
    for (size_t i = 0; i < outputs->size(); ++i) {
      const TensorConfig& output_config = config.output(static_cast<int>(i));
      torch::Tensor output = (*outputs)[i];
      if (output_config.has_reshape()) {
        if (batched && output.dim() == 0) {
          return absl::InternalError(absl::StrCat(config.name(), ": output '", output_config.name(),
                                                  "' has no batch dimension to keep"));
        }
        output = output.reshape(WithBatch(batched ? output.size(0) : -1, output_config.dims()));
      }
      absl::StatusOr<Tensor> tensor = ToHostTensor(output, output_config.name());
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
