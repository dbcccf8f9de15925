// `kiln-bench infer`: one ModelInfer request with inputs from a safetensors file, seeded random
// data or text (a text model), the outputs summarised (and optionally written to a safetensors
// file).
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

// "logits FP32 [2, 4] [0.1, -0.3, ...] min=-0.3 max=0.9 mean=0.2": name, OIP datatype, shape,
// the first (up to) 8 values with "..." when there are more, and min/max/mean over all values.
std::string SummarizeTensor(const Tensor& tensor);

// Runs the sub-command; `args` are the arguments after "infer". Returns the exit status.
int RunInferCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_INFER_COMMAND_H_
