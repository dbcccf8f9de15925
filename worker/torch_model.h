// The LibTorch backend's model: a TorchScript module whose parameters and buffers are views of
// a read-only safetensors mapping, so that every process forked after loading shares them.
//
// This header is LibTorch-free on purpose (LibTorch headers dominate compile time): tensors
// cross it as kiln::TensorView / kiln::Tensor, and LibTorch exceptions never cross it; they are
// caught inside and returned as absl::Status.
#ifndef KILN_WORKER_TORCH_MODEL_H_
#define KILN_WORKER_TORCH_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config_loader.h"
#include "common/safetensors.h"
#include "common/tensor.h"

namespace kiln {

// What loading cost; logged by the caller.
struct TorchModelLoadStats {
  double map_ms = 0;     // mmap + validate model.safetensors
  double load_ms = 0;    // torch::jit::load of model.pt (a heap copy of the weights)
  double rebind_ms = 0;  // pointing every parameter and buffer at the mapping, plus malloc_trim
  int64_t tensors_rebound = 0;  // viewed in place in the mapping
  int64_t tensors_copied = 0;   // misaligned in the file, so copied to the heap
  uint64_t mapped_bytes = 0;    // size of model.safetensors
};

// The LibTorch version kiln was built with, e.g. "1.13.0" (TORCH_VERSION).
const char* LibTorchVersion();

// Ownership: owns the TorchScript module and shares ownership of the mapping its tensors view
// (destroyed after the module). Thread-safety: Load may run in any single thread; Forward is
// not thread-safe (a worker serves one batch at a time: call it from one thread at a time), and
// sets process-global TorchScript switches for its pass: the passes of two models must not
// overlap either.
// Loading runs no forward pass and starts no thread, so it is safe before fork(); Forward is
// not (it starts the OpenMP pool), and runs only in workers.
class TorchModel {
 public:
  // Loads spec.model_path and, when spec.weights_path is set, maps it and rebinds every
  // parameter and buffer of the module to it. A tensor of the module missing from the file, a
  // tensor of the file the module does not have, or a dtype or shape mismatch is an error
  // naming the tensor. Weights without a safetensors file stay on the heap (still shared
  // copy-on-write after fork).
  //
  // With `map_weights` false (the --share_weights=off baseline) the safetensors file is
  // ignored and the weights stay in the private heap copy torch::jit::load makes, as in a server
  // where every worker loads its own model.
  //
  // It binds the config's tensors to forward()'s schema as Triton's PyTorch backend does:
  // - inputs by forward()'s argument names when every input is one of them, else by the
  //   <name>__<index> convention (INPUT__1: the second argument after self) when every input
  //   follows it; forward()'s arguments without a default must all be bound, and those left to
  //   their defaults must come after every bound one;
  // - output i is element <index> of a tuple or list result when every output is named
  //   <name>__<index>, else element i; a dict result is looked up by output name; a tensor result
  //   is element 0.
  // An input that fits neither rule, two tensors bound to one argument or element, an index out
  // of forward()'s range, an unbound argument without a default, or an optional input whose
  // argument takes no None and has no default is InvalidArgument naming the model file and the
  // tensor or argument.
  static absl::StatusOr<std::unique_ptr<TorchModel>> Load(const ModelSpec& spec,
                                                          bool map_weights = true);
  ~TorchModel();

  TorchModel(const TorchModel&) = delete;
  TorchModel& operator=(const TorchModel&) = delete;

  // Sets this process's LibTorch intra-op thread count. It starts the OpenMP pool: call it in
  // workers only, never before a fork.
  static void SetIntraOpThreads(int threads);
  // This process's LibTorch intra-op thread count (what SetIntraOpThreads set).
  static int IntraOpThreads();

  // Moves the module to CUDA device `index` (initialising CUDA: workers only, after the fork);
  // Forward then copies inputs there and outputs back. FailedPrecondition when this LibTorch
  // has no CUDA or the device does not exist.
  absl::Status UseCudaDevice(int index);
  // "cpu" or "cuda:N".
  std::string DeviceName() const;

  // Runs forward() on `inputs`, given in the order of the config's inputs (Load's binding
  // places them among forward()'s arguments); an optional input may be left out, and forward()
  // gets its argument's default, else None, in its place. Returns the outputs in the config's
  // output order, named after it. An input with a reshape reaches forward() in reshape.shape, an
  // output with one leaves in its dims (the batch dimension kept in front of both). The pass runs
  // under InferenceMode when config.torch().inference_mode, else NoGradGuard, and with the
  // config's TorchScript switches (jit_executor, jit_profiling, tensor_fuser, graph optimisation
  // unless disable_optimized_execution): process-global and thread-local LibTorch settings, set
  // on the calling thread for the pass and restored after it. The input memory is viewed, not
  // copied: the model must not write to it. Errors (common/status_util.h): inputs that do not
  // match the config (a required one missing, one unknown or out of order, a dtype LibTorch
  // lacks, a byte count that does not hold the shape) -> InvalidArgument; a forward pass that
  // throws, or outputs that do not match the config (a dict without an output's key included)
  // -> Internal (the master validated the request already: the model failed, not it).
  absl::StatusOr<std::vector<Tensor>> Forward(const std::vector<TensorView>& inputs);

  // Every parameter and buffer of the module (name, dtype, shape, where its data lives).
  std::vector<TensorView> Parameters() const;

  // The mapping the weights live in; nullptr when the model has no safetensors file.
  const MappedSafetensors* weights() const { return weights_.get(); }
  const TorchModelLoadStats& stats() const { return stats_; }
  const ModelSpec& spec() const { return spec_; }

 private:
  struct Module;  // wraps torch::jit::Module
  TorchModel(ModelSpec spec, std::shared_ptr<const MappedSafetensors> weights,
             std::unique_ptr<Module> module, TorchModelLoadStats stats);

  ModelSpec spec_;
  std::shared_ptr<const MappedSafetensors> weights_;  // outlives module_ (declared first)
  std::unique_ptr<Module> module_;
  TorchModelLoadStats stats_;
};

}  // namespace kiln

#endif  // KILN_WORKER_TORCH_MODEL_H_
