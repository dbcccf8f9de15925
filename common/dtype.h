// Element types of tensors as kiln moves them around (safetensors files, IPC, backends).
#ifndef KILN_COMMON_DTYPE_H_
#define KILN_COMMON_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include "absl/strings/string_view.h"

#include "proto/model_config.pb.h"

namespace kiln {

// Every dtype of the safetensors spec. Not all of them map to a config DataType or to a
// LibTorch 1.13 scalar type; the conversions below say so with std::nullopt.
enum class DType {
  kBool,
  kUInt8,
  kInt8,
  kUInt16,
  kInt16,
  kUInt32,
  kInt32,
  kUInt64,
  kInt64,
  kFloat8E4M3,
  kFloat8E5M2,
  kFloat16,
  kBFloat16,
  kFloat32,
  kFloat64,
};

// Size of one element in bytes (1, 2, 4 or 8). This is also the alignment a tensor of the
// dtype needs to be viewed in place.
size_t DTypeSize(DType dtype);

// The safetensors spelling ("F32", "BF16", ...), and back. Parsing is exact and case-sensitive.
absl::string_view DTypeName(DType dtype);
std::optional<DType> DTypeFromName(absl::string_view name);

// Mapping to and from the config's DataType. TYPE_BYTES and TYPE_INVALID have no DType; the
// unsigned types wider than 8 bits and the 8-bit floats have no DataType.
std::optional<DType> DTypeFromDataType(DataType data_type);
std::optional<DataType> DataTypeFromDType(DType dtype);

// Reads element `i` of dense `dtype` bytes as a double (FP16/BF16 widened; 64-bit integers
// rounded past 2^53; NaN for the 8-bit floats).
double ElementAsDouble(DType dtype, const uint8_t* data, size_t i);

// IEEE half and bfloat16 conversions (round to nearest even).
uint16_t FloatToHalf(float value);
float HalfToFloat(uint16_t bits);
uint16_t FloatToBFloat16(float value);
float BFloat16ToFloat(uint16_t bits);

}  // namespace kiln

#endif  // KILN_COMMON_DTYPE_H_
