#include "common/bytes_form.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace kiln {
namespace {

using Catch::Matchers::Contains;

std::string Form(const std::vector<std::string>& strings) {
  std::string raw(BytesFormSize(strings), '\0');
  WriteBytesForm(strings, reinterpret_cast<uint8_t*>(raw.data()));
  return raw;
}

TEST_CASE("the BYTES form round-trips any bytes, empty strings included", "[bytes_form]") {
  const std::vector<std::string> strings = {"", "abc", std::string("\0\xff\n", 3),
                                            std::string(300, 'x')};
  const std::string raw = Form(strings);
  CHECK(raw.size() == 4 * 4 + 0 + 3 + 3 + 300);
  // Little-endian lengths: 300 = 0x012c.
  CHECK(raw.substr(4 + 0 + 4 + 3 + 4 + 3, 4) == std::string("\x2c\x01\0\0", 4));
  absl::StatusOr<std::vector<std::string>> back = SplitBytesForm(raw, 4);
  REQUIRE(back.ok());
  CHECK(*back == strings);
  CHECK(SplitBytesForm("", 0)->empty());
  // A negative count: every string the form holds.
  CHECK(*SplitBytesForm(raw, -1) == strings);
  CHECK(SplitBytesForm("", -1)->empty());
  CHECK_FALSE(SplitBytesForm(raw.substr(0, raw.size() - 1), -1).ok());
}

TEST_CASE("a malformed BYTES form is InvalidArgument naming what is wrong", "[bytes_form]") {
  const std::string raw = Form({"abc", "de"});
  struct Case {
    std::string raw;
    int64_t count;
    std::string why;
  };
  for (const Case& c : std::vector<Case>{
           {raw, 3, "2 elements, expected 3 for shape [3, 1]"},
           {raw.substr(0, 4 + 3 + 2), 2, "element 1's 4-byte length is truncated (2 bytes left)"},
           {raw.substr(0, raw.size() - 1), 2, "element 1's length 2 runs past the end (1 bytes"},
           {raw + "z", 2, "1 trailing bytes after the 2 elements of shape [3, 1]"},
           {raw, 1, "6 trailing bytes after the 1 elements"},
       }) {
    INFO(c.why);
    absl::StatusOr<std::vector<std::string>> split = SplitBytesForm(c.raw, c.count, "shape [3, 1]");
    REQUIRE_FALSE(split.ok());
    CHECK(split.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(split.status().message()), Contains(c.why));
  }
}

}  // namespace
}  // namespace kiln
