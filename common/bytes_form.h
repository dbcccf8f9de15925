// The BYTES form of a list of strings, as the Open Inference Protocol carries a BYTES tensor in
// raw_input_contents: per string a 4-byte little-endian length, then its bytes. kiln uses it on
// the wire, for text in a worker's arena, and for recorded text requests.
#ifndef KILN_COMMON_BYTES_FORM_H_
#define KILN_COMMON_BYTES_FORM_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln {

inline constexpr size_t kBytesLengthPrefix = 4;

// The size of the form of `strings`.
size_t BytesFormSize(const std::vector<std::string>& strings);

// Writes the form of `strings` to `out`, which holds BytesFormSize(strings) bytes.
void WriteBytesForm(const std::vector<std::string>& strings, uint8_t* out);

// Splits `raw` into exactly `count` strings (count < 0: as many as it holds). InvalidArgument
// when it holds fewer, has a length that is cut off, runs past the end or exceeds
// `max_element_bytes` (checked before anything is copied), or has bytes left after them; the
// message says which element and, when `layout` is given (e.g. "shape [1, 2]"), names it:
// "1 elements, expected 2 for shape [1, 2]".
absl::StatusOr<std::vector<std::string>> SplitBytesForm(absl::string_view raw, int64_t count,
                                                        absl::string_view layout = "",
                                                        uint32_t max_element_bytes = UINT32_MAX);

}  // namespace kiln

#endif  // KILN_COMMON_BYTES_FORM_H_
