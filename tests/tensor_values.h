// Building kiln::Tensor values from typed element lists, for tests.
#ifndef KILN_TESTS_TENSOR_VALUES_H_
#define KILN_TESTS_TENSOR_VALUES_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "common/tensor.h"

namespace kiln::testing {

// A tensor whose bytes are `values` in host (little-endian) order.
template <typename T>
Tensor MakeTensor(std::string name, DType dtype, std::vector<int64_t> shape,
                  const std::vector<T>& values) {
  Tensor tensor;
  tensor.name = std::move(name);
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.bytes.resize(values.size() * sizeof(T));
  // No memcpy for no values: an empty vector's data() may be null, and memcpy's may not be.
  if (!values.empty()) std::memcpy(tensor.bytes.data(), values.data(), tensor.bytes.size());
  return tensor;
}

}  // namespace kiln::testing

#endif  // KILN_TESTS_TENSOR_VALUES_H_
