#include "common/safetensors_writer.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "tests/tensor_values.h"

namespace kiln {
namespace {

using ::kiln::testing::MakeTensor;

TEST_CASE("the safetensors writer round-trips through ParseSafetensors", "[safetensors]") {
  const Tensor logits = MakeTensor<float>("logits", DType::kFloat32, {2, 2}, {1, -2, 3.5f, 4});
  const Tensor ids = MakeTensor<int64_t>("we\"ird\\name", DType::kInt64, {3}, {1, 2, 3});
  const Tensor flag = MakeTensor<uint8_t>("flag", DType::kBool, {1}, {1});
  const Tensor empty = MakeTensor<float>("empty", DType::kFloat32, {0, 4}, {});
  const std::map<std::string, std::string> metadata = {{"model", "m"}, {"note", "a\nb"}};
  absl::StatusOr<std::string> image =
      SerializeSafetensors({flag.view(), logits.view(), ids.view(), empty.view()}, metadata);
  REQUIRE(image.ok());

  uint64_t header_size = 0;
  std::memcpy(&header_size, image->data(), 8);
  CHECK(header_size % 8 == 0);

  absl::StatusOr<SafetensorsIndex> index = ParseSafetensors(
      reinterpret_cast<const uint8_t*>(image->data()), image->size(), "out", {});
  REQUIRE(index.ok());
  CHECK(index->data_start() == 8 + header_size);
  CHECK(index->metadata() == metadata);
  REQUIRE(index->tensors().size() == 4);
  for (const Tensor* tensor : {&logits, &ids, &flag, &empty}) {
    const SafetensorsTensor* found = index->Find(tensor->name);
    INFO(tensor->name);
    REQUIRE(found != nullptr);
    CHECK(found->dtype == tensor->dtype);
    CHECK(found->shape == tensor->shape);
    REQUIRE(found->nbytes() == tensor->bytes.size());
    // No memcmp of the empty tensor: its bytes' data() may be null, and memcmp's may not be.
    CHECK((found->nbytes() == 0 ||
           std::memcmp(found->data, tensor->bytes.data(), found->nbytes()) == 0));
  }
}

TEST_CASE("the safetensors writer refuses repeated names and mismatched bytes", "[safetensors]") {
  const Tensor a = MakeTensor<float>("a", DType::kFloat32, {2}, {1, 2});
  CHECK_FALSE(SerializeSafetensors({a.view(), a.view()}, {}).ok());
  Tensor bad = a;
  bad.shape = {3};
  CHECK_FALSE(SerializeSafetensors({bad.view()}, {}).ok());
}

TEST_CASE("data_start_mod 1 misaligns every tensor wider than a byte", "[safetensors]") {
  const Tensor a = MakeTensor<float>("a", DType::kFloat32, {2}, {1, 2});
  absl::StatusOr<std::string> image = SerializeSafetensors({a.view()}, {}, /*data_start_mod=*/1);
  REQUIRE(image.ok());
  // A std::string's buffer is at least 8-aligned, so the file offset decides the alignment.
  absl::StatusOr<SafetensorsIndex> index = ParseSafetensors(
      reinterpret_cast<const uint8_t*>(image->data()), image->size(), "out");
  REQUIRE(index.ok());
  CHECK(index->data_start() % 8 == 1);
  CHECK_FALSE(index->tensors().front().aligned);
}

}  // namespace
}  // namespace kiln
