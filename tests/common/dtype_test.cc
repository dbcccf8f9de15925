#include "common/dtype.h"

#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <vector>

namespace kiln {
namespace {

struct Expected {
  DType dtype;
  const char* name;
  size_t size;
};

// Every enumerator, spelled out so that a new one without a row here fails the count check.
const std::vector<Expected>& AllDTypes() {
  static const std::vector<Expected> all = {
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
  };
  return all;
}

TEST_CASE("DType names are the safetensors spellings and round-trip", "[dtype]") {
  REQUIRE(AllDTypes().size() == static_cast<size_t>(DType::kFloat64) + 1);
  std::set<std::string> names;
  for (const Expected& e : AllDTypes()) {
    INFO("dtype " << e.name);
    CHECK(std::string(DTypeName(e.dtype)) == e.name);
    std::optional<DType> parsed = DTypeFromName(e.name);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == e.dtype);
    names.insert(std::string(DTypeName(e.dtype)));
  }
  CHECK(names.size() == AllDTypes().size());  // no two dtypes share a name
}

TEST_CASE("DTypeFromName is exact and case-sensitive", "[dtype]") {
  CHECK_FALSE(DTypeFromName("f32").has_value());
  CHECK_FALSE(DTypeFromName("F32 ").has_value());
  CHECK_FALSE(DTypeFromName("").has_value());
  CHECK_FALSE(DTypeFromName("FLOAT").has_value());
  CHECK_FALSE(DTypeFromName("F8").has_value());
}

TEST_CASE("DTypeSize is the element size", "[dtype]") {
  for (const Expected& e : AllDTypes()) {
    INFO("dtype " << e.name);
    CHECK(DTypeSize(e.dtype) == e.size);
  }
}

TEST_CASE("DType maps to and from the config DataType", "[dtype]") {
  const std::vector<std::pair<DataType, DType>> pairs = {
      {TYPE_BOOL, DType::kBool},     {TYPE_UINT8, DType::kUInt8},  {TYPE_INT8, DType::kInt8},
      {TYPE_INT16, DType::kInt16},   {TYPE_INT32, DType::kInt32},  {TYPE_INT64, DType::kInt64},
      {TYPE_FP16, DType::kFloat16},  {TYPE_FP32, DType::kFloat32}, {TYPE_FP64, DType::kFloat64},
      {TYPE_BF16, DType::kBFloat16},
  };
  for (const auto& [data_type, dtype] : pairs) {
    INFO("DataType " << DataType_Name(data_type));
    std::optional<DType> to = DTypeFromDataType(data_type);
    REQUIRE(to.has_value());
    CHECK(*to == dtype);
    std::optional<DataType> back = DataTypeFromDType(dtype);
    REQUIRE(back.has_value());
    CHECK(*back == data_type);
  }

  SECTION("TYPE_BYTES and TYPE_INVALID have no DType") {
    CHECK_FALSE(DTypeFromDataType(TYPE_BYTES).has_value());
    CHECK_FALSE(DTypeFromDataType(TYPE_INVALID).has_value());
  }
  SECTION("wide unsigned ints and 8-bit floats have no DataType") {
    for (DType dtype :
         {DType::kUInt16, DType::kUInt32, DType::kUInt64, DType::kFloat8E4M3, DType::kFloat8E5M2}) {
      INFO("dtype " << DTypeName(dtype));
      CHECK_FALSE(DataTypeFromDType(dtype).has_value());
    }
  }
}

}  // namespace
}  // namespace kiln
