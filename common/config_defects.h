// The defects of one model file (config.pbtxt or kiln.pbtxt), collected so that the loader
// reports all of them at once, one per line:
//   "<path>: field '<field>': expected <x>, got <y>"
//   "<path>:<line>: field '<field>': ..." where the line is known.
// And the small helpers both readers (common/model_config_loader.cc, common/triton_config.cc)
// name fields and check files with.
#ifndef KILN_COMMON_CONFIG_DEFECTS_H_
#define KILN_COMMON_CONFIG_DEFECTS_H_

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace kiln {

// Ownership: a value. Thread-safety: none (one loader call at a time).
class Defects {
 public:
  explicit Defects(std::string path) : path_(std::move(path)) {}

  const std::string& path() const { return path_; }

  template <typename T>
  void Field(absl::string_view field, absl::string_view expected, const T& got) {
    messages_.push_back(
        absl::StrCat(path_, ": field '", field, "': expected ", expected, ", got ", got));
  }
  // A field at a known line (1-based) that kiln refuses: "<path>:<line>: field '<field>': <why>".
  void AtLine(int line, absl::string_view field, absl::string_view why) {
    messages_.push_back(absl::StrCat(path_, ":", line, ": field '", field, "': ", why));
  }
  void Add(absl::string_view message) { messages_.push_back(absl::StrCat(path_, ": ", message)); }
  // Takes `other`'s defects after this one's.
  void Append(const Defects& other) {
    messages_.insert(messages_.end(), other.messages_.begin(), other.messages_.end());
  }

  bool empty() const { return messages_.empty(); }
  absl::Status ToStatus() const {
    return absl::InvalidArgumentError(absl::StrJoin(messages_, "\n"));
  }

 private:
  std::string path_;
  std::vector<std::string> messages_;
};

inline std::string Quoted(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

// Index-qualified field name: "input[1].dims[0]".
inline std::string Indexed(absl::string_view field, int index) {
  return absl::StrCat(field, "[", index, "]");
}

// Whether `path` names a regular file (after symlinks). Never throws: a path the system refuses
// (too long, a component that is not a directory, no permission) is not a file.
inline bool IsRegularFile(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

// Whether `name` is a bare file name, one that stays in the directory it is looked up in (no '/',
// not "." or "..").
inline bool IsBareFileName(const std::string& name) {
  const std::filesystem::path path(name);
  return !name.empty() && path == path.filename() && path != "." && path != "..";
}

}  // namespace kiln

#endif  // KILN_COMMON_CONFIG_DEFECTS_H_
