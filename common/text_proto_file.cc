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

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::TextFormat;

// "path:line:column: " of the `index`th value of `field` in `tree` (-1: not repeated), or
// "path: " when the tree does not know it.
std::string Where(const std::string& path, const TextFormat::ParseInfoTree* tree,
                  const FieldDescriptor* field, int index) {
  const TextFormat::ParseLocation at =
      tree == nullptr ? TextFormat::ParseLocation() : tree->GetLocation(field, index);
  if (at.line < 0) return absl::StrCat(path, ": ");
  return absl::StrCat(path, ":", at.line + 1, ":", at.column + 1, ": ");
}

// Appends an error for each enum field of `message` (and of the messages in it) holding a number
// its enum does not name: proto3's text format takes any number for an open enum ("data_type: 32").
void CheckEnumValues(const std::string& path, const Message& message,
                     const TextFormat::ParseInfoTree* tree, const std::string& prefix,
                     std::vector<std::string>& errors) {
  const google::protobuf::Reflection& reflection = *message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection.ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    const int count = field->is_repeated() ? reflection.FieldSize(message, field) : 1;
    for (int i = 0; i < count; ++i) {
      const int index = field->is_repeated() ? i : -1;
      const std::string name = field->is_repeated()
                                   ? absl::StrCat(prefix, field->name(), "[", i, "]")
                                   : absl::StrCat(prefix, field->name());
      if (field->type() == FieldDescriptor::TYPE_MESSAGE) {
        CheckEnumValues(path,
                        field->is_repeated() ? reflection.GetRepeatedMessage(message, field, i)
                                             : reflection.GetMessage(message, field),
                        tree == nullptr ? nullptr : tree->GetTreeForNested(field, index),
                        name + ".", errors);
      } else if (field->type() == FieldDescriptor::TYPE_ENUM) {
        const int value = field->is_repeated() ? reflection.GetRepeatedEnumValue(message, field, i)
                                               : reflection.GetEnumValue(message, field);
        const google::protobuf::EnumDescriptor& type = *field->enum_type();
        if (type.FindValueByNumber(value) != nullptr) continue;
        std::vector<std::string> names;
        for (int v = 0; v < type.value_count(); ++v) names.push_back(type.value(v)->name());
        errors.push_back(absl::StrCat(Where(path, tree, field, index), "field '", name,
                                      "': ", value, " is not a ", type.name(), " (expected one of ",
                                      absl::StrJoin(names, ", "), ")"));
      }
    }
  }
}

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
  TextFormat::ParseInfoTree own_locations;
  if (locations == nullptr) locations = &own_locations;
  TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(locations);
  if (!parser.ParseFromString(text, message)) {
    return absl::InvalidArgumentError(
        errors.errors().empty()
            ? absl::StrCat(path, ": not a valid ", message->GetDescriptor()->full_name())
            : absl::StrJoin(errors.errors(), "\n"));
  }
  std::vector<std::string> enum_errors;
  CheckEnumValues(path, *message, locations, "", enum_errors);
  if (!enum_errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(enum_errors, "\n"));
  return absl::OkStatus();
}

}  // namespace kiln
