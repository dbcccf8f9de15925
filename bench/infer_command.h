// `kiln-bench infer`: one ModelInfer request with inputs from a safetensors file or seeded
// random data, the outputs summarised (and optionally written to a safetensors file).
#ifndef KILN_BENCH_INFER_COMMAND_H_
#define KILN_BENCH_INFER_COMMAND_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/oip_client.h"
#include "common/safetensors.h"
#include "common/tensor.h"

namespace kiln::bench {

// Views of the tensors in `index` that feed `specs`, in the specs' order. Input "x" is the
// tensor named "x", else "input.x" (as in the demo models' 1/reference.safetensors). Its dtype
// must be the input's datatype and its shape must have the input's rank and fixed dims. Every
// defect is an InvalidArgument naming the input (and the file's tensors when one is missing).
// The views point into the index's memory.
absl::StatusOr<std::vector<TensorView>> InputsFromSafetensors(const SafetensorsIndex& index,
                                                              const std::vector<InputSpec>& specs,
                                                              const std::string& source);

// A safetensors image of `tensors` (in the given order, back to back) with `metadata` as its
// "__metadata__"; the JSON header is padded with spaces to a multiple of 8 bytes, so the data
// section starts 8-aligned. Duplicate names, a dtype/byte-count mismatch, or a null view with
// bytes are InvalidArgument.
absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<TensorView>& tensors, const std::map<std::string, std::string>& metadata);
absl::Status WriteSafetensorsFile(const std::string& path, const std::vector<TensorView>& tensors,
                                  const std::map<std::string, std::string>& metadata);

// "logits FP32 [2, 4] [0.1, -0.3, ...] min=-0.3 max=0.9 mean=0.2": name, OIP datatype, shape,
// the first (up to) 8 values with "..." when there are more, and min/max/mean over all values.
std::string SummarizeTensor(const Tensor& tensor);

// Runs the sub-command; `args` are the arguments after "infer". Returns the exit status.
int RunInferCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_INFER_COMMAND_H_
