#include "common/sample_text.h"

#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace kiln {
namespace {

constexpr absl::string_view kSamplePassage =
    "The quick brown fox jumps over the lazy dog while the model server keeps every worker "
    "warm so that the first request is as fast as the thousandth and nobody waits for a cold "
    "start after a deploy or when the service scales out to meet its traffic";

}  // namespace

std::string SampleText(int32_t words) {
  const std::vector<absl::string_view> all = absl::StrSplit(kSamplePassage, ' ');
  std::string text;
  for (int32_t i = 0; i < words; ++i) {
    if (i > 0) text += ' ';
    const absl::string_view word = all[i % all.size()];
    text.append(word.data(), word.size());
  }
  return text;
}

}  // namespace kiln
