#include "common/frame_channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_util.h"

namespace kiln {
namespace {

// What CreatePair asks for as SO_SNDBUF / SO_RCVBUF. Linux doubles the value (for its own
// bookkeeping) and caps the request at net.core.wmem_max / rmem_max. A datagram is refused with
// EMSGSIZE unless it is at most sk_sndbuf - 32 bytes, and the sender blocks while its unread
// datagrams' memory exceeds sk_sndbuf; asking for two frames' worth leaves room for a few
// maximum-size frames in flight.
constexpr int kSocketBufferRequest = static_cast<int>(2 * kMaxFrameBytes);
// The smallest effective SO_SNDBUF that lets a kMaxFrameBytes datagram through (the kernel's
// 32-byte slack plus room for the skb overhead).
constexpr int kSocketBufferNeeded = static_cast<int>(kMaxFrameBytes + 4096);

absl::Status PeerClosed(absl::string_view what) {
  return absl::UnavailableError(absl::StrCat(what, ": peer closed"));
}

void CloseAll(const std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
}

// Sets one buffer option to `kSocketBufferRequest`; if the effective size stays below
// `kSocketBufferNeeded` (a low net.core.*mem_max), tries the privileged *FORCE variant, which
// ignores the cap. Best effort: a socket left smaller still works for frames that fit, and Send
// reports EMSGSIZE for one that does not.
void GrowBuffer(int fd, int option, int force_option) {
  int value = kSocketBufferRequest;
  (void)::setsockopt(fd, SOL_SOCKET, option, &value, sizeof(value));
  int effective = 0;
  socklen_t length = sizeof(effective);
  if (::getsockopt(fd, SOL_SOCKET, option, &effective, &length) == 0 &&
      effective >= kSocketBufferNeeded) {
    return;
  }
  value = kSocketBufferRequest;
  (void)::setsockopt(fd, SOL_SOCKET, force_option, &value, sizeof(value));
}

int64_t MonotonicMs() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

}  // namespace

absl::StatusOr<std::pair<FrameChannel, FrameChannel>> FrameChannel::CreatePair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    return ErrnoStatus(errno, "FrameChannel::CreatePair: socketpair(AF_UNIX, SOCK_SEQPACKET)");
  }
  for (int fd : fds) {
    GrowBuffer(fd, SO_SNDBUF, SO_SNDBUFFORCE);
    GrowBuffer(fd, SO_RCVBUF, SO_RCVBUFFORCE);
  }
  return std::make_pair(FrameChannel(fds[0]), FrameChannel(fds[1]));
}

FrameChannel::FrameChannel(int fd) : fd_(fd) {}

FrameChannel::FrameChannel(FrameChannel&& other) noexcept : fd_(other.Release()) {}

FrameChannel& FrameChannel::operator=(FrameChannel&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = other.Release();
  }
  return *this;
}

FrameChannel::~FrameChannel() { Close(); }

int FrameChannel::Release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void FrameChannel::Close() {
  if (fd_ >= 0) {
    ::close(fd_);  // never retried on EINTR: on Linux the fd is gone either way
    fd_ = -1;
  }
}

absl::Status FrameChannel::Send(const google::protobuf::MessageLite& message,
                                const std::vector<int>& fds) {
  if (fd_ < 0) return absl::FailedPreconditionError("FrameChannel::Send: channel is closed");
  if (fds.size() > static_cast<size_t>(kMaxFrameFds)) {
    return absl::InvalidArgumentError(absl::StrCat("FrameChannel::Send: ", fds.size(),
                                                   " fds, at most ", kMaxFrameFds, " per frame"));
  }
  for (int fd : fds) {
    if (fd < 0) {
      return absl::InvalidArgumentError(absl::StrCat("FrameChannel::Send: invalid fd ", fd));
    }
  }
  const size_t size = message.ByteSizeLong();
  if (size > kMaxFrameMessageBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("FrameChannel::Send: ", message.GetTypeName(), " is ", size,
                     " bytes, over the frame limit of ", kMaxFrameMessageBytes));
  }
  std::string frame(size + 1, '\0');
  frame[0] = static_cast<char>(kFrameVersion);
  if (!message.SerializeToArray(&frame[1], static_cast<int>(size))) {
    return absl::InternalError(
        absl::StrCat("FrameChannel::Send: cannot serialise ", message.GetTypeName()));
  }

  iovec iov{};
  iov.iov_base = frame.data();
  iov.iov_len = frame.size();
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  union {
    cmsghdr header;  // for alignment
    char bytes[CMSG_SPACE(sizeof(int) * kMaxFrameFds)];
  } control;
  if (!fds.empty()) {
    std::memset(&control, 0, sizeof(control));
    const size_t fd_bytes = sizeof(int) * fds.size();
    msg.msg_control = control.bytes;
    msg.msg_controllen = CMSG_SPACE(fd_bytes);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(fd_bytes);
    std::memcpy(CMSG_DATA(cmsg), fds.data(), fd_bytes);
  }

  ssize_t sent;
  do {
    sent = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    const int err = errno;
    switch (err) {
      case EPIPE:
      case ECONNRESET:
      case ENOTCONN:
        return PeerClosed("FrameChannel::Send");
      case EAGAIN:
#if EWOULDBLOCK != EAGAIN
      case EWOULDBLOCK:
#endif
        return absl::DeadlineExceededError(
            "FrameChannel::Send: send buffer full on a non-blocking socket (EAGAIN)");
      case EMSGSIZE:
        return absl::ResourceExhaustedError(absl::StrCat(
            "FrameChannel::Send: the kernel refused a ", frame.size(),
            "-byte frame (EMSGSIZE): the socket's send buffer is smaller; raise "
            "net.core.wmem_max to at least ",
            kSocketBufferNeeded));
      default:
        return ErrnoStatus(err, "FrameChannel::Send: sendmsg");
    }
  }
  if (static_cast<size_t>(sent) != frame.size()) {  // SEQPACKET sends whole datagrams
    return absl::InternalError(absl::StrCat("FrameChannel::Send: sent ", sent, " of ",
                                            frame.size(), " bytes"));
  }
  return absl::OkStatus();
}

absl::Status FrameChannel::Receive(google::protobuf::MessageLite* message,
                                   std::vector<int>* fds) {
  if (fd_ < 0) return absl::FailedPreconditionError("FrameChannel::Receive: channel is closed");
  // One byte more than the largest frame, so that an oversized datagram shows as such even
  // where MSG_TRUNC were not reported. Per thread (Send and Receive may run concurrently on
  // different threads), allocated once and never initialised (the kernel writes what it reads).
  constexpr size_t kBufferBytes = kMaxFrameBytes + 1;
  thread_local std::unique_ptr<char[]> buffer;
  if (buffer == nullptr) buffer.reset(new char[kBufferBytes]);

  iovec iov{};
  iov.iov_base = buffer.get();
  iov.iov_len = kBufferBytes;
  union {
    cmsghdr header;  // for alignment
    char bytes[CMSG_SPACE(sizeof(int) * kMaxFrameFds)];
  } control;
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;

  ssize_t received;
  do {
    std::memset(&control, 0, sizeof(control));
    msg.msg_control = control.bytes;
    msg.msg_controllen = sizeof(control.bytes);
    msg.msg_flags = 0;
    received = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
  } while (received < 0 && errno == EINTR);
  if (received < 0) {
    const int err = errno;
    switch (err) {
      case EAGAIN:
#if EWOULDBLOCK != EAGAIN
      case EWOULDBLOCK:
#endif
        return absl::DeadlineExceededError("FrameChannel::Receive: no frame ready (EAGAIN)");
      case ECONNRESET:
        return PeerClosed("FrameChannel::Receive");
      default:
        return ErrnoStatus(err, "FrameChannel::Receive: recvmsg");
    }
  }

  // Take ownership of whatever fds arrived before anything can fail.
  std::vector<int> received_fds;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(cmsg);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
      received_fds.push_back(fd);
    }
  }

  if (received == 0) {
    CloseAll(received_fds);
    return PeerClosed("FrameChannel::Receive");
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    CloseAll(received_fds);
    return absl::DataLossError(absl::StrCat(
        "FrameChannel::Receive: truncated frame: its fds were cut off (at most ", kMaxFrameFds,
        " per frame)"));
  }
  if ((msg.msg_flags & MSG_TRUNC) != 0 || static_cast<size_t>(received) > kMaxFrameBytes) {
    CloseAll(received_fds);
    return absl::DataLossError(absl::StrCat(
        "FrameChannel::Receive: truncated frame: over the limit of ", kMaxFrameBytes, " bytes"));
  }
  if (static_cast<uint8_t>(buffer[0]) != kFrameVersion) {
    CloseAll(received_fds);
    return absl::DataLossError(absl::StrCat("FrameChannel::Receive: bad frame header byte ",
                                            static_cast<int>(static_cast<uint8_t>(buffer[0])),
                                            " (expected ", static_cast<int>(kFrameVersion), ")"));
  }
  if (!message->ParseFromArray(buffer.get() + 1, static_cast<int>(received - 1))) {
    CloseAll(received_fds);
    return absl::DataLossError(absl::StrCat("FrameChannel::Receive: a ", received,
                                            "-byte frame does not parse as ",
                                            message->GetTypeName()));
  }
  if (fds != nullptr) {
    fds->insert(fds->end(), received_fds.begin(), received_fds.end());
  } else {
    CloseAll(received_fds);
  }
  return absl::OkStatus();
}

bool FrameChannel::WaitReadable(int timeout_ms) const {
  if (fd_ < 0) return false;
  const int64_t deadline = timeout_ms < 0 ? -1 : MonotonicMs() + timeout_ms;
  int wait_ms = timeout_ms < 0 ? -1 : timeout_ms;
  for (;;) {
    pollfd p{};
    p.fd = fd_;
    p.events = POLLIN;
    const int ready = ::poll(&p, 1, wait_ms);
    if (ready > 0) return true;  // POLLIN, or POLLHUP / POLLERR: Receive reports those
    if (ready == 0) return false;
    if (errno != EINTR) return false;
    if (deadline >= 0) {
      const int64_t left = deadline - MonotonicMs();
      if (left <= 0) return false;
      wait_ms = static_cast<int>(left);
    }
  }
}

}  // namespace kiln
