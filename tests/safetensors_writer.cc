#include "tests/safetensors_writer.h"

#include <cstdint>

#include <nlohmann/json.hpp>

namespace kiln::testing {

std::string SerializeSafetensors(const std::vector<TensorView>& tensors, int data_start_mod) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::string data;
  for (const TensorView& t : tensors) {
    const uint64_t begin = data.size();
    data.append(static_cast<const char*>(t.data), t.nbytes);
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {begin, static_cast<uint64_t>(data.size())}}};
  }
  std::string json = header.dump();
  while ((8 + json.size()) % 8 != static_cast<size_t>(data_start_mod)) json.push_back(' ');
  std::string image(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) image[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return image + json + data;
}

}  // namespace kiln::testing
