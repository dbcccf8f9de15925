// Writing safetensors files (the format common/safetensors.h reads): for kiln-bench's outputs
// and for tests that need files of a given layout.
#ifndef KILN_COMMON_SAFETENSORS_WRITER_H_
#define KILN_COMMON_SAFETENSORS_WRITER_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tensor.h"

namespace kiln {

// A safetensors image of `tensors`, in the given order and back to back, with `metadata` as its
// "__metadata__" (omitted when empty). The JSON header is padded with spaces so that the data
// section starts at 8 + N == `data_start_mod` (mod 8): 0, as writers normally do, keeps every
// tensor aligned when sizes allow; 1 misaligns every tensor wider than a byte (for tests).
// Repeated or reserved names, and bytes that do not hold a tensor's shape, are InvalidArgument.
absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<TensorView>& tensors, const std::map<std::string, std::string>& metadata = {},
    int data_start_mod = 0);

// SerializeSafetensors (aligned) written to `path`, replacing it.
absl::Status WriteSafetensorsFile(const std::string& path, const std::vector<TensorView>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

}  // namespace kiln

#endif  // KILN_COMMON_SAFETENSORS_WRITER_H_
