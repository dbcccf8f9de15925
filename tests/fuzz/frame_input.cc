#include "tests/fuzz/frame_input.h"

#include <algorithm>
#include <cstring>

namespace kiln::fuzz {

FrameEnds MakeFrameEnds(size_t arena_bytes) {
  FrameEnds ends;
  absl::StatusOr<std::pair<FrameChannel, FrameChannel>> pair = FrameChannel::CreatePair();
  Expect(pair.ok(), "a frame channel pair");
  ends.channel = *std::move(pair);
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("fuzz", arena_bytes);
  Expect(arena.ok(), "the fuzzer's arena");
  ends.arena = *std::move(arena);
  return ends;
}

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
