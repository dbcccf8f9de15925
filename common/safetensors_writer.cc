#include "common/safetensors_writer.h"

#include <cerrno>
#include <cstdint>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "nlohmann/json.hpp"

namespace kiln {

absl::StatusOr<std::string> SerializeSafetensors(const std::vector<TensorView>& tensors,
                                                 const std::map<std::string, std::string>& metadata,
                                                 int data_start_mod) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const TensorView& view : tensors) {
    if (view.name == "__metadata__" || !names.insert(view.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor name '", view.name, "' is reserved or repeated"));
    }
    if (ByteSize(view.dtype, view.shape) != view.nbytes ||
        (view.data == nullptr && view.nbytes > 0)) {
      return absl::InvalidArgumentError(absl::StrCat("safetensors: tensor '", view.name, "': ",
                                                     view.nbytes, " bytes do not hold ",
                                                     DTypeName(view.dtype), " ",
                                                     ShapeString(view.shape)));
    }
    header[view.name] = {{"dtype", std::string(DTypeName(view.dtype))},
                         {"shape", view.shape},
                         {"data_offsets", {offset, offset + view.nbytes}}};
    offset += view.nbytes;
  }
  std::string json = header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  while ((8 + json.size()) % 8 != static_cast<size_t>(data_start_mod % 8)) json.push_back(' ');

  std::string image;
  image.reserve(8 + json.size() + offset);
  const uint64_t length = json.size();
  for (int i = 0; i < 8; ++i) image.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  image += json;
  for (const TensorView& view : tensors) {
    image.append(static_cast<const char*>(view.data), view.nbytes);
  }
  return image;
}

absl::Status WriteSafetensorsFile(const std::string& path, const std::vector<TensorView>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  ASSIGN_OR_RETURN(const std::string image, SerializeSafetensors(tensors, metadata));
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) return ErrnoStatus(errno, absl::StrCat(path, ": cannot open for writing"));
  file.write(image.data(), static_cast<std::streamsize>(image.size()));
  file.close();
  if (!file) return ErrnoStatus(errno, absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace kiln
