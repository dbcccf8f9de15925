// What the frame fuzzers (worker_frames, worker_results) share: their input is
//   [2 bytes: n, little-endian][n bytes: one datagram][the rest: an image of the worker's arena]
// and the datagram goes through a real SOCK_SEQPACKET pair into FrameChannel::Receive.
#ifndef KILN_TESTS_FUZZ_FRAME_INPUT_H_
#define KILN_TESTS_FUZZ_FRAME_INPUT_H_

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "common/frame_channel.h"
#include "common/shared_arena.h"
#include "tests/fuzz/fuzz_expect.h"

namespace kiln::fuzz {

// A frame fuzzer's input split; views into the input. A value.
struct FrameInput {
  const uint8_t* datagram = nullptr;
  size_t datagram_size = 0;
  const uint8_t* image = nullptr;  // the arena's first bytes
  size_t image_size = 0;
};

// A connected frame channel pair (first: the master's end, second: the worker's) and a worker
// arena of `arena_bytes`; aborts when either cannot be made. Owns both; one fuzzer thread.
struct FrameEnds {
  std::pair<FrameChannel, FrameChannel> channel;
  std::unique_ptr<SharedArena> arena;
};
FrameEnds MakeFrameEnds(size_t arena_bytes);

// std::nullopt when the input is shorter than its 2-byte header.
std::optional<FrameInput> SplitFrameInput(const uint8_t* data, size_t size);

// Copies the input's image to the start of `arena`, and zeros what the previous input's image
// left past it.
void LoadArenaImage(const FrameInput& input, SharedArena& arena);

// Sends the input's datagram into `from` and receives it from `to` as a `Frame`, checking what
// FrameChannel::Receive promises: an empty datagram is EOF (Unavailable), a bad one DataLoss,
// and exactly the datagrams that parse (the version byte, then a `Frame`) are received.
template <typename Frame>
absl::Status ReceiveDatagram(const FrameInput& input, const FrameChannel& from, FrameChannel& to,
                             Frame* frame) {
  const size_t n = input.datagram_size;
  Expect(::send(from.fd(), input.datagram, n, MSG_NOSIGNAL) == static_cast<ssize_t>(n),
         "sending the datagram");
  const absl::Status received = to.Receive(frame);
  Note("Receive", received);
  if (n == 0) {
    ExpectError(received, absl::StatusCode::kUnavailable, "an empty datagram is EOF");
    return received;
  }
  Frame direct;
  const bool parses =
      input.datagram[0] == kFrameVersion && direct.ParseFromArray(input.datagram + 1, n - 1);
  if (!received.ok()) {
    ExpectError(received, absl::StatusCode::kDataLoss, "a bad frame is DataLoss");
    Expect(!parses, "a frame that parses is received");
  } else {
    Expect(parses, "only a frame that parses is received");
  }
  return received;
}

}  // namespace kiln::fuzz

#endif  // KILN_TESTS_FUZZ_FRAME_INPUT_H_
