#include "common/dtype.h"

#include <array>
#include <cmath>
#include <cstring>

namespace kiln {
namespace {

template <typename T>
T Load(const uint8_t* src, size_t i) {
  T value;
  std::memcpy(&value, src + i * sizeof(T), sizeof(T));
  return value;
}

struct DTypeInfo {
  DType dtype;
  absl::string_view name;
  size_t size;
};

constexpr std::array<DTypeInfo, 15> kDTypes = {{
    {DType::kBool, "BOOL", 1},
    {DType::kUInt8, "U8", 1},
    {DType::kInt8, "I8", 1},
    {DType::kUInt16, "U16", 2},
    {DType::kInt16, "I16", 2},
    {DType::kUInt32, "U32", 4},
    {DType::kInt32, "I32", 4},
    {DType::kUInt64, "U64", 8},
    {DType::kInt64, "I64", 8},
    {DType::kFloat8E4M3, "F8_E4M3", 1},
    {DType::kFloat8E5M2, "F8_E5M2", 1},
    {DType::kFloat16, "F16", 2},
    {DType::kBFloat16, "BF16", 2},
    {DType::kFloat32, "F32", 4},
    {DType::kFloat64, "F64", 8},
}};

const DTypeInfo& Info(DType dtype) { return kDTypes[static_cast<size_t>(dtype)]; }

struct DataTypePair {
  DataType data_type;
  DType dtype;
};

constexpr std::array<DataTypePair, 10> kDataTypes = {{
    {TYPE_BOOL, DType::kBool},
    {TYPE_UINT8, DType::kUInt8},
    {TYPE_INT8, DType::kInt8},
    {TYPE_INT16, DType::kInt16},
    {TYPE_INT32, DType::kInt32},
    {TYPE_INT64, DType::kInt64},
    {TYPE_FP16, DType::kFloat16},
    {TYPE_FP32, DType::kFloat32},
    {TYPE_FP64, DType::kFloat64},
    {TYPE_BF16, DType::kBFloat16},
}};

}  // namespace

size_t DTypeSize(DType dtype) { return Info(dtype).size; }

absl::string_view DTypeName(DType dtype) { return Info(dtype).name; }

std::optional<DType> DTypeFromName(absl::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.name == name) return info.dtype;
  }
  return std::nullopt;
}

std::optional<DType> DTypeFromDataType(DataType data_type) {
  for (const DataTypePair& pair : kDataTypes) {
    if (pair.data_type == data_type) return pair.dtype;
  }
  return std::nullopt;
}

std::optional<DataType> DataTypeFromDType(DType dtype) {
  for (const DataTypePair& pair : kDataTypes) {
    if (pair.dtype == dtype) return pair.data_type;
  }
  return std::nullopt;
}

double ElementAsDouble(DType dtype, const uint8_t* data, size_t i) {
  switch (dtype) {
    case DType::kBool:
    case DType::kUInt8:
      return data[i];
    case DType::kInt8:
      return Load<int8_t>(data, i);
    case DType::kUInt16:
      return Load<uint16_t>(data, i);
    case DType::kInt16:
      return Load<int16_t>(data, i);
    case DType::kUInt32:
      return Load<uint32_t>(data, i);
    case DType::kInt32:
      return Load<int32_t>(data, i);
    case DType::kUInt64:
      return static_cast<double>(Load<uint64_t>(data, i));
    case DType::kInt64:
      return static_cast<double>(Load<int64_t>(data, i));
    case DType::kFloat16:
      return HalfToFloat(Load<uint16_t>(data, i));
    case DType::kBFloat16:
      return BFloat16ToFloat(Load<uint16_t>(data, i));
    case DType::kFloat32:
      return Load<float>(data, i);
    case DType::kFloat64:
      return Load<double>(data, i);
    case DType::kFloat8E4M3:
    case DType::kFloat8E5M2:
      break;
  }
  return std::nan("");
}

uint16_t FloatToHalf(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) {  // Inf or NaN (NaN stays a quiet NaN)
    return sign | (magnitude > 0x7f800000u ? 0x7e00u : 0x7c00u);
  }
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: Inf
  if (magnitude < 0x38800000u) {                        // below 2^-14: a half subnormal (or 0)
    float abs_value;
    std::memcpy(&abs_value, &magnitude, sizeof(abs_value));
    return sign | static_cast<uint16_t>(std::nearbyint(abs_value * 0x1p24f));
  }
  // Rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest even.
  magnitude += 0xc8000fffu + ((magnitude >> 13) & 1u);
  return sign | static_cast<uint16_t>(magnitude >> 13);
}

float HalfToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  const uint32_t out = exponent == 31 ? (sign | 0x7f800000u | (mantissa << 13))
                                      : (sign | ((exponent + 112) << 23) | (mantissa << 13));
  float value;
  std::memcpy(&value, &out, sizeof(value));
  return value;
}

uint16_t FloatToBFloat16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float BFloat16ToFloat(uint16_t bits) {
  const uint32_t out = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &out, sizeof(value));
  return value;
}

}  // namespace kiln
