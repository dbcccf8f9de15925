#include "common/dtype.h"

#include <array>

namespace kiln {
namespace {

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

}  // namespace kiln
