#include "common/bytes_form.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kiln {

size_t BytesFormSize(const std::vector<std::string>& strings) {
  size_t size = 0;
  for (const std::string& s : strings) size += kBytesLengthPrefix + s.size();
  return size;
}

void WriteBytesForm(const std::vector<std::string>& strings, uint8_t* out) {
  for (const std::string& s : strings) {
    const uint32_t length = static_cast<uint32_t>(s.size());
    for (size_t i = 0; i < kBytesLengthPrefix; ++i)
      *out++ = static_cast<uint8_t>(length >> (8 * i));
    if (!s.empty()) std::memcpy(out, s.data(), s.size());
    out += s.size();
  }
}

absl::StatusOr<std::vector<std::string>> SplitBytesForm(absl::string_view raw, int64_t count,
                                                        absl::string_view layout,
                                                        uint32_t max_element_bytes) {
  std::vector<std::string> strings;
  strings.reserve(std::min<size_t>(std::max<int64_t>(count, 0), raw.size() / kBytesLengthPrefix));
  size_t pos = 0;
  for (int64_t i = 0; count < 0 ? pos < raw.size() : i < count; ++i) {
    const size_t left = raw.size() - pos;
    if (left == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(i, " elements, expected ", count, layout.empty() ? "" : " for ", layout));
    }
    if (left < kBytesLengthPrefix) {
      return absl::InvalidArgumentError(
          absl::StrCat("element ", i, "'s 4-byte length is truncated (", left, " bytes left)"));
    }
    const auto* b = reinterpret_cast<const unsigned char*>(raw.data() + pos);
    const uint32_t length =
        uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
    pos += kBytesLengthPrefix;
    if (length > max_element_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "element ", i, " is ", length, " bytes, more than the ", max_element_bytes, " allowed"));
    }
    if (length > raw.size() - pos) {
      return absl::InvalidArgumentError(absl::StrCat("element ", i, "'s length ", length,
                                                     " runs past the end (", raw.size() - pos,
                                                     " bytes left)"));
    }
    strings.emplace_back(raw.substr(pos, length));
    pos += length;
  }
  if (pos != raw.size()) {  // count >= 0 only
    return absl::InvalidArgumentError(absl::StrCat(raw.size() - pos, " trailing bytes after the ",
                                                   count, " elements", layout.empty() ? "" : " of ",
                                                   layout));
  }
  return strings;
}

}  // namespace kiln
