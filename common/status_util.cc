#include "common/status_util.h"

#include <string.h>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace kiln {
namespace {

// strerror_r's text for `err`, whichever variant the C library declares: GNU's returns the
// text (which may or may not be `buffer`), XSI's fills `buffer` and returns 0.
[[maybe_unused]] const char* StrerrorText(const char* gnu, const char* /*buffer*/) { return gnu; }
[[maybe_unused]] const char* StrerrorText(int xsi, const char* buffer) {
  return xsi == 0 ? buffer : "unknown error";
}

}  // namespace

absl::Status ErrnoStatus(int err, absl::string_view what) {
  if (err == 0) return absl::UnknownError(absl::StrCat(what, ": unknown error (errno 0)"));
  char buffer[256] = "";
  return absl::Status(
      absl::ErrnoToStatusCode(err),
      absl::StrCat(what, ": ", StrerrorText(strerror_r(err, buffer, sizeof(buffer)), buffer)));
}

absl::Status Annotate(const absl::Status& status, absl::string_view prefix) {
  if (status.ok()) return status;
  absl::Status annotated(status.code(), absl::StrCat(prefix, ": ", status.message()));
  status.ForEachPayload([&annotated](absl::string_view type_url, const absl::Cord& payload) {
    annotated.SetPayload(type_url, payload);
  });
  return annotated;
}

}  // namespace kiln
