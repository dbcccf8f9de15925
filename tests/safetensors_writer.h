// Writes safetensors images for tests, in the order given (no sorting, no alignment fix-ups), so
// a test controls the exact layout.
#ifndef KILN_TESTS_SAFETENSORS_WRITER_H_
#define KILN_TESTS_SAFETENSORS_WRITER_H_

#include <string>
#include <vector>

#include "common/tensor.h"

namespace kiln::testing {

// Header JSON padded with spaces so that the data section starts at 8 + N == `data_start_mod`
// modulo 8 (0: aligned, as writers normally do; 1: every tensor wider than a byte misaligned).
std::string SerializeSafetensors(const std::vector<TensorView>& tensors, int data_start_mod = 0);

}  // namespace kiln::testing

#endif  // KILN_TESTS_SAFETENSORS_WRITER_H_
