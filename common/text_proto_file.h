// Reading a protobuf text-format file (config.pbtxt, <model>.traffic.pbtxt) with errors that
// name the file and the line, as editors count them.
#ifndef KILN_COMMON_TEXT_PROTO_FILE_H_
#define KILN_COMMON_TEXT_PROTO_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/text_format.h"

namespace kiln {

// The whole file; when it cannot be opened or read, errno's code (ENOENT: NotFound, EACCES:
// PermissionDenied) naming it, with the system's reason.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

// Parses the text-format file `path` into `message` (recording where each field was into
// `locations` when given). ReadWholeFile's error when it cannot be read; InvalidArgument with one
// "path:line:column: message" line per parse error (1-based), or per enum field holding a number
// its enum does not name (proto3's text format accepts "data_type: 32").
absl::Status ParseTextProtoFile(const std::string& path, google::protobuf::Message* message,
                                google::protobuf::TextFormat::ParseInfoTree* locations = nullptr);

}  // namespace kiln

#endif  // KILN_COMMON_TEXT_PROTO_FILE_H_
