// Row operations on tensors along the batch dim: SliceRows, PadRows, KeepRows and ConcatRows
// (how a worker splits a batch into passes, pads it to a warmed size and joins the outputs); and
// the sizes every reader checks bytes against (NumElements, ByteSize).
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/tensor.h"
#include "tests/tensor_values.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::MakeTensor;

TEST_CASE("ByteSize is elements x dtype size, and nothing for a negative dim or an overflow",
          "[tensor]") {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  CHECK(ByteSize(DType::kFloat32, {2, 3}) == 24u);
  CHECK(ByteSize(DType::kFloat64, {}) == 8u);  // a scalar
  CHECK(ByteSize(DType::kInt8, {4, 0}) == 0u);
  CHECK(ByteSize(DType::kFloat16, {2, -1}) == std::nullopt);
  CHECK(NumElements({kMax}) == kMax);
  CHECK(ByteSize(DType::kFloat32, {kMax}) == std::nullopt);  // fits int64, not 4x in size_t
  CHECK(ByteSize(DType::kUInt8, {int64_t{1} << 40, int64_t{1} << 30}) == std::nullopt);
}

template <typename T>
std::vector<T> ValuesOf(const void* data, size_t nbytes) {
  REQUIRE(nbytes % sizeof(T) == 0);
  std::vector<T> values(nbytes / sizeof(T));
  if (nbytes > 0) std::memcpy(values.data(), data, nbytes);
  return values;
}

template <typename T>
std::vector<T> ValuesOf(const Tensor& tensor) {
  return ValuesOf<T>(tensor.bytes.data(), tensor.bytes.size());
}

// 4 rows of 3 floats: row r holds r.0, r.1, r.2.
Tensor FourRows() {
  return MakeTensor<float>(
      "x", DType::kFloat32, {4, 3},
      {0.0f, 0.1f, 0.2f, 1.0f, 1.1f, 1.2f, 2.0f, 2.1f, 2.2f, 3.0f, 3.1f, 3.2f});
}

TEST_CASE("SliceRows views rows of the same memory", "[tensor]") {
  const Tensor tensor = FourRows();
  const TensorView slice = SliceRows(tensor.view(), 1, 2);
  CHECK(slice.name == "x");
  CHECK(slice.dtype == DType::kFloat32);
  CHECK(slice.shape == std::vector<int64_t>{2, 3});
  CHECK(slice.nbytes == 2 * 3 * sizeof(float));
  CHECK(slice.data == tensor.bytes.data() + 1 * 3 * sizeof(float));  // a view, not a copy
  CHECK(ValuesOf<float>(slice.data, slice.nbytes) ==
        std::vector<float>{1.0f, 1.1f, 1.2f, 2.0f, 2.1f, 2.2f});

  const TensorView last = SliceRows(tensor.view(), 3, 1);
  CHECK(last.shape == std::vector<int64_t>{1, 3});
  CHECK(ValuesOf<float>(last.data, last.nbytes) == std::vector<float>{3.0f, 3.1f, 3.2f});

  const TensorView all = SliceRows(tensor.view(), 0, 4);
  CHECK(all.shape == tensor.shape);
  CHECK(all.data == tensor.bytes.data());
  CHECK(all.nbytes == tensor.bytes.size());

  const TensorView none = SliceRows(tensor.view(), 2, 0);
  CHECK(none.shape == std::vector<int64_t>{0, 3});
  CHECK(none.nbytes == 0);
}

TEST_CASE("SliceRows of a rank-3 tensor keeps the trailing dims", "[tensor]") {
  std::vector<int32_t> values(3 * 2 * 2);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<int32_t>(i);
  const Tensor tensor = MakeTensor<int32_t>("ids", DType::kInt32, {3, 2, 2}, values);
  const TensorView slice = SliceRows(tensor.view(), 2, 1);
  CHECK(slice.shape == std::vector<int64_t>{1, 2, 2});
  CHECK(ValuesOf<int32_t>(slice.data, slice.nbytes) == std::vector<int32_t>{8, 9, 10, 11});
}

TEST_CASE("PadRows appends zero rows and keeps the original bytes", "[tensor]") {
  const Tensor tensor = FourRows();
  const Tensor padded = PadRows(tensor.view(), 6);
  CHECK(padded.name == "x");
  CHECK(padded.dtype == DType::kFloat32);
  CHECK(padded.shape == std::vector<int64_t>{6, 3});
  REQUIRE(padded.bytes.size() == 6 * 3 * sizeof(float));
  CHECK(std::memcmp(padded.bytes.data(), tensor.bytes.data(), tensor.bytes.size()) == 0);
  for (size_t i = tensor.bytes.size(); i < padded.bytes.size(); ++i) {
    INFO("byte " << i);
    CHECK(padded.bytes[i] == 0);
  }
  // The source is untouched (PadRows copies).
  CHECK(tensor.shape == std::vector<int64_t>{4, 3});
  CHECK(tensor.bytes.size() == 4 * 3 * sizeof(float));

  const Tensor same = PadRows(tensor.view(), 4);
  CHECK(same.shape == tensor.shape);
  CHECK(same.bytes == tensor.bytes);
}

TEST_CASE("PadRows of a tensor with no rows yet gives whole zero rows", "[tensor]") {
  // Its contract allows rows >= its own rows, 0 included. The row size cannot come from
  // nbytes / rows there; it must come from the trailing dims, or the result's bytes do not hold
  // its shape. (Unreachable from the worker today: requests have batch >= 1.)
  const Tensor empty = MakeTensor<float>("x", DType::kFloat32, {0, 3}, {});
  const Tensor padded = PadRows(empty.view(), 2);
  CHECK(padded.shape == std::vector<int64_t>{2, 3});
  CHECK(padded.bytes.size() == 2 * 3 * sizeof(float));
  CHECK(ValuesOf<float>(padded) == std::vector<float>(6, 0.0f));
}

TEST_CASE("PadRows pads a slice from where the slice starts", "[tensor]") {
  const Tensor tensor = FourRows();
  const Tensor padded = PadRows(SliceRows(tensor.view(), 2, 1), 2);
  CHECK(padded.shape == std::vector<int64_t>{2, 3});
  CHECK(ValuesOf<float>(padded) == std::vector<float>{2.0f, 2.1f, 2.2f, 0, 0, 0});
}

TEST_CASE("KeepRows drops the rows after the first n", "[tensor]") {
  Tensor tensor = FourRows();
  KeepRows(tensor, 2);
  CHECK(tensor.shape == std::vector<int64_t>{2, 3});
  CHECK(ValuesOf<float>(tensor) == std::vector<float>{0.0f, 0.1f, 0.2f, 1.0f, 1.1f, 1.2f});

  KeepRows(tensor, 2);  // as many rows as it has: unchanged
  CHECK(tensor.shape == std::vector<int64_t>{2, 3});
  CHECK(tensor.bytes.size() == 2 * 3 * sizeof(float));

  KeepRows(tensor, 5);  // more rows than it has: unchanged
  CHECK(tensor.shape == std::vector<int64_t>{2, 3});
  CHECK(tensor.bytes.size() == 2 * 3 * sizeof(float));

  KeepRows(tensor, 0);
  CHECK(tensor.shape == std::vector<int64_t>{0, 3});
  CHECK(tensor.bytes.empty());
}

TEST_CASE("KeepRows undoes PadRows", "[tensor]") {
  const Tensor tensor = FourRows();
  Tensor padded = PadRows(tensor.view(), 8);
  KeepRows(padded, 4);
  CHECK(padded.shape == tensor.shape);
  CHECK(padded.bytes == tensor.bytes);
}

TEST_CASE("ConcatRows joins parts along the batch dim, in order", "[tensor]") {
  const Tensor a = MakeTensor<int64_t>("y", DType::kInt64, {1, 2}, {1, 2});
  const Tensor b = MakeTensor<int64_t>("y", DType::kInt64, {2, 2}, {3, 4, 5, 6});
  const Tensor c = MakeTensor<int64_t>("y", DType::kInt64, {1, 2}, {7, 8});
  absl::StatusOr<Tensor> joined = ConcatRows({&a, &b, &c});
  REQUIRE(joined.ok());
  CHECK(joined->name == "y");
  CHECK(joined->dtype == DType::kInt64);
  CHECK(joined->shape == std::vector<int64_t>{4, 2});
  CHECK(ValuesOf<int64_t>(*joined) == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8});

  absl::StatusOr<Tensor> reversed = ConcatRows({&c, &a});
  REQUIRE(reversed.ok());
  CHECK(ValuesOf<int64_t>(*reversed) == std::vector<int64_t>{7, 8, 1, 2});

  absl::StatusOr<Tensor> one = ConcatRows({&b});
  REQUIRE(one.ok());
  CHECK(one->shape == b.shape);
  CHECK(one->bytes == b.bytes);
}

TEST_CASE("ConcatRows undoes SliceRows", "[tensor]") {
  const Tensor tensor = FourRows();
  std::vector<Tensor> parts;
  for (const auto& [begin, count] : {std::pair<int64_t, int64_t>{0, 3}, {3, 1}}) {
    const TensorView slice = SliceRows(tensor.view(), begin, count);
    const auto* data = static_cast<const uint8_t*>(slice.data);
    parts.push_back(Tensor{slice.name, slice.dtype, slice.shape, {data, data + slice.nbytes}});
  }
  absl::StatusOr<Tensor> joined = ConcatRows({&parts[0], &parts[1]});
  REQUIRE(joined.ok());
  CHECK(joined->shape == tensor.shape);
  CHECK(joined->bytes == tensor.bytes);
}

TEST_CASE("ConcatRows of mismatched parts is InvalidArgument naming the tensor", "[tensor]") {
  const Tensor a = MakeTensor<float>("logits", DType::kFloat32, {1, 2}, {1, 2});
  SECTION("another dtype") {
    const Tensor b = MakeTensor<int32_t>("logits", DType::kInt32, {1, 2}, {3, 4});
    absl::StatusOr<Tensor> joined = ConcatRows({&a, &b});
    REQUIRE_FALSE(joined.ok());
    CHECK(joined.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(joined.status().message()), Contains("'logits'"));
    CHECK_THAT(std::string(joined.status().message()), Contains("part 1"));
  }
  SECTION("other trailing dims") {
    const Tensor b = MakeTensor<float>("logits", DType::kFloat32, {1, 3}, {3, 4, 5});
    absl::StatusOr<Tensor> joined = ConcatRows({&a, &a, &b});
    REQUIRE_FALSE(joined.ok());
    CHECK(joined.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(joined.status().message()), Contains("'logits'"));
    CHECK_THAT(std::string(joined.status().message()), Contains("part 2 is F32 [1, 3]"));
    CHECK_THAT(std::string(joined.status().message()), Contains("part 0 is F32 [1, 2]"));
  }
  SECTION("another rank") {
    const Tensor b = MakeTensor<float>("logits", DType::kFloat32, {1, 2, 1}, {3, 4});
    absl::StatusOr<Tensor> joined = ConcatRows({&a, &b});
    REQUIRE_FALSE(joined.ok());
    CHECK(joined.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(joined.status().message()), Contains("'logits'"));
  }
  SECTION("no parts, or a part without a batch dim") {
    CHECK(ConcatRows({}).status().code() == absl::StatusCode::kInvalidArgument);
    const Tensor scalar = MakeTensor<float>("s", DType::kFloat32, {}, {1});
    absl::StatusOr<Tensor> joined = ConcatRows({&scalar, &scalar});
    REQUIRE_FALSE(joined.ok());
    CHECK(joined.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(joined.status().message()), Contains("'s'"));
  }
}

}  // namespace
}  // namespace kiln
