#include "common/text_proto_file.h"

#include <cerrno>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "google/protobuf/io/tokenizer.h"

namespace kiln {
namespace {

// Collects text-format parse errors as "path:line:column: message" (1-based, as editors count).
class ParseErrors : public google::protobuf::io::ErrorCollector {
 public:
  explicit ParseErrors(std::string path) : path_(std::move(path)) {}

  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    errors_.push_back(absl::StrCat(path_, ":", line + 1, ":", column + 1, ": ", message));
  }

  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::string path_;
  std::vector<std::string> errors_;
};

}  // namespace

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoStatus(errno, absl::StrCat(path, ": cannot open"));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return ErrnoStatus(errno, absl::StrCat(path, ": read failed"));
  return contents.str();
}

absl::Status ParseTextProtoFile(const std::string& path, google::protobuf::Message* message,
                                google::protobuf::TextFormat::ParseInfoTree* locations) {
  ASSIGN_OR_RETURN(const std::string text, ReadWholeFile(path));
  ParseErrors errors(path);
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (locations != nullptr) parser.WriteLocationsTo(locations);
  if (!parser.ParseFromString(text, message)) {
    return absl::InvalidArgumentError(
        errors.errors().empty()
            ? absl::StrCat(path, ": not a valid ", message->GetDescriptor()->full_name())
            : absl::StrJoin(errors.errors(), "\n"));
  }
  return absl::OkStatus();
}

}  // namespace kiln
