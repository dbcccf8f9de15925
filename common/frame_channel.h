// Control frames between kiln's processes (master <-> zygote, master <-> worker).
//
// One protobuf message per frame over a connected SOCK_SEQPACKET Unix socket: the kernel keeps
// message boundaries, so a frame is one datagram. File descriptors (a worker's channel end, an
// arena's memfd) travel beside a frame as SCM_RIGHTS. Frames are small control messages; tensor
// bytes live in a SharedArena (common/shared_arena.h) and frames carry offsets into it.
//
// Wire format of one datagram: one header byte (kFrameVersion), then the serialised message.
// The header byte exists because a proto3 message with every field at its default serialises
// to zero bytes, and a zero-length datagram on SEQPACKET reads exactly like the peer closing
// the socket (recvmsg returns 0). With the header every frame is at least one byte long, so a
// zero-length read always means EOF.
#ifndef KILN_COMMON_FRAME_CHANNEL_H_
#define KILN_COMMON_FRAME_CHANNEL_H_

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message_lite.h"

namespace kiln {

// The largest datagram a channel sends or accepts, header byte included.
inline constexpr size_t kMaxFrameBytes = 1 << 20;
// The largest serialised message one frame carries (kMaxFrameBytes less the header byte).
inline constexpr size_t kMaxFrameMessageBytes = kMaxFrameBytes - 1;
// The most file descriptors one frame carries.
inline constexpr int kMaxFrameFds = 4;
// The first byte of every frame; a datagram starting with anything else is refused (DataLoss).
inline constexpr uint8_t kFrameVersion = 1;

// One end of a frame channel.
//
// Ownership: owns its socket fd (closed on destruction); movable, not copyable.
// Thread-safety: Send may be called from one thread while Receive runs in another (the kernel
// keeps whole datagrams, and each direction uses its own buffer); two concurrent Sends or two
// concurrent Receives need external locking. Move, Release and Close must not race with
// anything else on the same object.
class FrameChannel {
 public:
  // A connected pair (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)); each end owns its fd.
  // Both ends get send/receive buffers large enough for kMaxFrameBytes datagrams where the
  // system allows it (SO_SNDBUF is capped by net.core.wmem_max; see Send for what a smaller
  // cap means).
  static absl::StatusOr<std::pair<FrameChannel, FrameChannel>> CreatePair();

  FrameChannel() = default;        // empty: fd() == -1; Send and Receive fail
  explicit FrameChannel(int fd);   // adopts fd (a connected SOCK_SEQPACKET socket)
  FrameChannel(FrameChannel&& other) noexcept;
  FrameChannel& operator=(FrameChannel&& other) noexcept;
  FrameChannel(const FrameChannel&) = delete;
  FrameChannel& operator=(const FrameChannel&) = delete;
  ~FrameChannel();

  // Serialises `message` and sends it as one datagram with `fds` attached (the caller keeps its
  // fds; the kernel duplicates them into the receiver). Blocking. Retries EINTR. Uses
  // MSG_NOSIGNAL, so a closed peer never raises SIGPIPE.
  // Errors: the peer closed the socket -> kUnavailable ("peer closed"); the message serialises
  // to more than kMaxFrameMessageBytes, or the kernel refuses the datagram size (EMSGSIZE: the
  // socket's send buffer is capped below the frame size by net.core.wmem_max) ->
  // kResourceExhausted; more than kMaxFrameFds fds or a negative fd -> kInvalidArgument;
  // EAGAIN on a non-blocking fd (send buffer full) -> kDeadlineExceeded; an empty channel ->
  // kFailedPrecondition; anything else -> the errno's code, with its text.
  absl::Status Send(const google::protobuf::MessageLite& message,
                    const std::vector<int>& fds = {});

  // Receives one frame into `message`; received fds (set O_CLOEXEC via MSG_CMSG_CLOEXEC) are
  // appended to `fds` if non-null, else closed. Blocking unless the fd is non-blocking.
  // Retries EINTR. On any error no fd is appended (any that arrived are closed) and `message`
  // is unspecified.
  // Errors: the peer closed the socket (a zero-length read) -> kUnavailable ("peer closed");
  // no frame ready on a non-blocking fd (EAGAIN) -> kDeadlineExceeded; a truncated frame
  // (MSG_TRUNC / MSG_CTRUNC: over kMaxFrameBytes or over kMaxFrameFds fds), a bad header byte
  // or unparsable bytes -> kDataLoss; an empty channel -> kFailedPrecondition.
  absl::Status Receive(google::protobuf::MessageLite* message, std::vector<int>* fds = nullptr);

  // Waits up to `timeout_ms` (-1 = forever) for a frame to be readable (poll). Returns true if
  // readable, or if the peer closed or the socket failed (Receive will then say so); false on
  // timeout or for an empty channel. Retries EINTR with the time that is left.
  bool WaitReadable(int timeout_ms) const;

  int fd() const { return fd_; }
  // Gives up ownership of the fd (returns it; the channel becomes empty, fd() == -1).
  int Release();
  // Closes the fd now (idempotent).
  void Close();

 private:
  int fd_ = -1;
};

}  // namespace kiln

#endif  // KILN_COMMON_FRAME_CHANNEL_H_
