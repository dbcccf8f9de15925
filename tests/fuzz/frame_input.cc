#include "tests/fuzz/frame_input.h"

#include <algorithm>
#include <cstring>

namespace kiln::fuzz {

std::optional<FrameInput> SplitFrameInput(const uint8_t* data, size_t size) {
  if (size < 2) return std::nullopt;
  FrameInput input;
  input.datagram = data + 2;
  input.datagram_size = std::min<size_t>(data[0] | (data[1] << 8), size - 2);
  input.image = input.datagram + input.datagram_size;
  input.image_size = size - 2 - input.datagram_size;
  return input;
}

void LoadArenaImage(const FrameInput& input, SharedArena& arena) {
  static size_t dirty = 0;  // bytes an earlier input wrote into the arena
  std::memset(arena.data(), 0, dirty);
  dirty = std::min(input.image_size, arena.size());
  if (dirty > 0) std::memcpy(arena.data(), input.image, dirty);
}

}  // namespace kiln::fuzz
