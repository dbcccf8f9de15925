// FrameChannel (SOCK_SEQPACKET frames with SCM_RIGHTS fds) and SharedArena (memfd-backed
// shared memory), within one process and across fork().
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/arena_tensors.h"
#include "common/frame_channel.h"
#include "common/shared_arena.h"
#include "proto/worker_frames.pb.h"
#include "tests/skip.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using internal::InferResult;
using internal::TensorRef;
using internal::WarmupReport;

std::pair<FrameChannel, FrameChannel> MakePair() {
  absl::StatusOr<std::pair<FrameChannel, FrameChannel>> pair = FrameChannel::CreatePair();
  REQUIRE(pair.ok());
  REQUIRE(pair->first.fd() >= 0);
  REQUIRE(pair->second.fd() >= 0);
  return std::move(*pair);
}

InferResult SampleResult(uint64_t call_id) {
  InferResult result;
  result.set_call_id(call_id);
  result.set_code(3);
  result.set_message("bad input " + std::to_string(call_id));
  result.set_compute_ms(1.25);
  TensorRef* out = result.add_outputs();
  out->set_name("logits");
  out->set_dtype("F32");
  out->add_shape(1);
  out->add_shape(1000);
  out->set_offset(4096);
  out->set_nbytes(4000);
  return result;
}

// Messages compare by their bytes (lite messages have no MessageDifferencer).
bool Same(const google::protobuf::MessageLite& a, const google::protobuf::MessageLite& b) {
  return a.GetTypeName() == b.GetTypeName() && a.SerializeAsString() == b.SerializeAsString();
}

void SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  REQUIRE(flags >= 0);
  REQUIRE(fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0);
}

// How many fds this process has open.
int OpenFdCount() {
  DIR* dir = opendir("/proc/self/fd");
  REQUIRE(dir != nullptr);
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count - 1;  // the directory's own fd
}

int EffectiveSendBuffer(int fd) {
  int value = 0;
  socklen_t length = sizeof(value);
  REQUIRE(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &value, &length) == 0);
  return value;
}

// The effective SO_SNDBUF that lets a kMaxFrameBytes datagram through.
constexpr int kNeededSendBuffer = static_cast<int>(kMaxFrameBytes + 4096);

// Why `fd`'s send buffer does not take a maximum-size frame; empty where it does. Where
// net.core.wmem_max allows that without privileges, CreatePair must have got there (the kernel
// doubles the capped request).
std::string SendBufferShortOfMaxFrame(int fd) {
  long wmem_max = 0;
  if (FILE* f = fopen("/proc/sys/net/core/wmem_max", "r")) {
    if (fscanf(f, "%ld", &wmem_max) != 1) wmem_max = 0;
    fclose(f);
  }
  const int effective = EffectiveSendBuffer(fd);
  INFO("net.core.wmem_max " << wmem_max << ", effective SO_SNDBUF " << effective);
  if (2 * wmem_max >= kNeededSendBuffer) REQUIRE(effective >= kNeededSendBuffer);
  if (effective >= kNeededSendBuffer) return "";
  return "net.core.wmem_max " + std::to_string(wmem_max) + " caps SO_SNDBUF at " +
         std::to_string(effective) + " bytes, under a maximum-size frame's " +
         std::to_string(kNeededSendBuffer) + " (raising it needs CAP_NET_ADMIN)";
}

// Runs `body` in a forked child, which exits with body's return value (never returning into
// Catch); returns the child's wait status.
int RunInChild(const std::function<int()>& body) {
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int code = 99;
    try {
      code = body();
    } catch (...) {
      code = 98;
    }
    _exit(code);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  return status;
}

bool ExitedWith(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

// --- FrameChannel --------------------------------------------------------------------------

TEST_CASE("a frame round-trips through a channel pair", "[frame_channel]") {
  auto [a, b] = MakePair();
  const InferResult sent = SampleResult(7);
  REQUIRE(a.Send(sent).ok());
  InferResult received;
  const absl::Status status = b.Receive(&received);
  REQUIRE(status.ok());
  CHECK(Same(received, sent));
  CHECK(received.outputs(0).name() == "logits");

  // And the other way.
  REQUIRE(b.Send(SampleResult(8)).ok());
  REQUIRE(a.Receive(&received).ok());
  CHECK(received.call_id() == 8);
}

TEST_CASE("an all-default message (zero bytes serialised) is a frame, not EOF", "[frame_channel]") {
  auto [a, b] = MakePair();
  const InferResult empty;
  REQUIRE(empty.ByteSizeLong() == 0);
  REQUIRE(a.Send(empty).ok());
  InferResult received = SampleResult(1);
  const absl::Status status = b.Receive(&received);
  INFO(status.ToString());
  REQUIRE(status.ok());
  CHECK(Same(received, empty));
}

TEST_CASE("several frames keep their boundaries and order", "[frame_channel]") {
  auto [a, b] = MakePair();
  std::vector<InferResult> sent;
  for (uint64_t i = 0; i < 5; ++i) {
    InferResult result = SampleResult(i);
    result.set_message(std::string(1 + i * 1000, static_cast<char>('a' + i)));
    sent.push_back(result);
    REQUIRE(a.Send(result).ok());
  }
  WarmupReport report;
  report.set_worker_id(3);
  REQUIRE(a.Send(report).ok());

  for (const InferResult& expected : sent) {
    InferResult received;
    REQUIRE(b.Receive(&received).ok());
    CHECK(Same(received, expected));
  }
  WarmupReport received_report;
  REQUIRE(b.Receive(&received_report).ok());
  CHECK(received_report.worker_id() == 3);
  SetNonBlocking(b.fd());
  InferResult extra;
  CHECK(b.Receive(&extra).code() == absl::StatusCode::kDeadlineExceeded);
}

TEST_CASE("a frame of exactly the maximum size goes through", "[frame_channel]") {
  auto [a, b] = MakePair();
  InferResult big;
  big.set_message(std::string(kMaxFrameMessageBytes - 4, 'm'));  // 1 tag + 3 length bytes
  REQUIRE(big.ByteSizeLong() == kMaxFrameMessageBytes);
  const absl::Status status = a.Send(big);
  if (const std::string why = SendBufferShortOfMaxFrame(a.fd()); !why.empty()) {
    // net.core.wmem_max caps the buffer and we lack CAP_NET_ADMIN: a clear error, not a hang;
    // the round trip cannot run.
    CHECK(status.code() == absl::StatusCode::kResourceExhausted);
    CHECK_THAT(std::string(status.message()), Contains("wmem_max"));
    KILN_SKIP("the round trip: " << why);
  }
  INFO(status.ToString());
  REQUIRE(status.ok());
  InferResult received;
  REQUIRE(b.Receive(&received).ok());
  CHECK(received.message().size() == kMaxFrameMessageBytes - 4);
  CHECK(Same(received, big));
}

TEST_CASE("a message over the frame limit is refused on Send, and nothing is sent",
          "[frame_channel]") {
  auto [a, b] = MakePair();
  InferResult big;
  big.set_message(std::string(kMaxFrameMessageBytes - 3, 'm'));
  REQUIRE(big.ByteSizeLong() == kMaxFrameMessageBytes + 1);
  const absl::Status status = a.Send(big);
  CHECK(status.code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(status.message()), Contains("over the frame limit"));

  InferResult far_too_big;
  far_too_big.set_message(std::string(3 * kMaxFrameBytes, 'm'));
  CHECK(a.Send(far_too_big).code() == absl::StatusCode::kResourceExhausted);

  CHECK_FALSE(b.WaitReadable(0));
}

TEST_CASE("a pipe fd passed beside a frame refers to the same pipe", "[frame_channel]") {
  auto [a, b] = MakePair();
  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  InferResult frame = SampleResult(1);
  REQUIRE(a.Send(frame, {pipe_fds[0]}).ok());
  close(pipe_fds[0]);  // the caller keeps its fd; the receiver gets its own

  std::vector<int> fds = {-5};  // received fds are appended
  InferResult received;
  REQUIRE(b.Receive(&received, &fds).ok());
  CHECK(Same(received, frame));
  REQUIRE(fds.size() == 2);
  CHECK(fds[0] == -5);
  const int read_end = fds[1];
  REQUIRE(read_end >= 0);
  CHECK((fcntl(read_end, F_GETFD) & FD_CLOEXEC) != 0);

  REQUIRE(write(pipe_fds[1], "hello", 5) == 5);
  char buffer[8] = {};
  REQUIRE(read(read_end, buffer, sizeof(buffer)) == 5);
  CHECK(std::string(buffer, 5) == "hello");
  close(pipe_fds[1]);
  close(read_end);
}

TEST_CASE("an arena memfd passed beside a frame maps the same pages", "[frame_channel][arena]") {
  auto [a, b] = MakePair();
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("fdpass", 8192);
  REQUIRE(arena.ok());
  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  REQUIRE(a.Send(SampleResult(2), {(*arena)->fd(), pipe_fds[1]}).ok());

  std::vector<int> fds;
  InferResult received;
  REQUIRE(b.Receive(&received, &fds).ok());
  REQUIRE(fds.size() == 2);  // in the order sent
  absl::StatusOr<std::unique_ptr<SharedArena>> adopted = SharedArena::Adopt(fds[0]);
  REQUIRE(adopted.ok());
  CHECK((*adopted)->size() == (*arena)->size());
  CHECK((*adopted)->data() != (*arena)->data());

  std::memcpy((*arena)->data() + 100, "through the arena", 17);
  CHECK(std::memcmp((*adopted)->data() + 100, "through the arena", 17) == 0);
  (*adopted)->data()[5000] = 0x5a;
  CHECK((*arena)->data()[5000] == 0x5a);

  REQUIRE(write(fds[1], "x", 1) == 1);  // the second fd is the pipe's write end
  char c = 0;
  REQUIRE(read(pipe_fds[0], &c, 1) == 1);
  CHECK(c == 'x');
  close(fds[1]);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

TEST_CASE("received fds are closed when the caller does not want them", "[frame_channel]") {
  auto [a, b] = MakePair();
  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  REQUIRE(a.Send(SampleResult(1), {pipe_fds[0], pipe_fds[1]}).ok());
  const int before = OpenFdCount();
  InferResult received;
  REQUIRE(b.Receive(&received).ok());
  CHECK(OpenFdCount() == before);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

TEST_CASE("fd limits: too many to send is an error, too many received is DataLoss, no leak",
          "[frame_channel]") {
  auto [a, b] = MakePair();
  std::vector<int> many(kMaxFrameFds + 1, a.fd());
  CHECK(a.Send(SampleResult(1), many).code() == absl::StatusCode::kInvalidArgument);
  CHECK(a.Send(SampleResult(1), {-1}).code() == absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(b.WaitReadable(0));

  // A raw sender that attaches more fds than a frame may carry.
  constexpr int kCount = kMaxFrameFds + 2;
  std::vector<int> fds(kCount, STDERR_FILENO);
  char byte = static_cast<char>(kFrameVersion);
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kCount)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * kCount);
  std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * kCount);
  REQUIRE(sendmsg(a.fd(), &msg, 0) == 1);

  const int before = OpenFdCount();
  std::vector<int> received_fds;
  InferResult received;
  const absl::Status status = b.Receive(&received, &received_fds);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(status.message()), Contains("truncated"));
  CHECK(received_fds.empty());
  CHECK(OpenFdCount() == before);
}

TEST_CASE("a frame and an fd cross fork(): the child sends, the parent receives",
          "[frame_channel]") {
  auto [parent_end, child_end] = MakePair();
  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    parent_end.Close();
    WarmupReport report;
    report.set_worker_id(4);
    report.set_pid(static_cast<int32_t>(getpid()));
    report.set_device("cpu");
    report.add_shapes()->set_batch_size(8);
    int code = child_end.Send(report, {pipe_fds[1]}).ok() ? 0 : 1;
    _exit(code);
  }
  child_end.Close();
  close(pipe_fds[1]);

  WarmupReport report;
  std::vector<int> fds;
  const absl::Status status = parent_end.Receive(&report, &fds);
  int wait_status = 0;
  REQUIRE(waitpid(child, &wait_status, 0) == child);
  CHECK(ExitedWith(wait_status, 0));
  REQUIRE(status.ok());
  CHECK(report.worker_id() == 4);
  CHECK(report.pid() == child);
  CHECK(report.device() == "cpu");
  REQUIRE(report.shapes_size() == 1);
  CHECK(report.shapes(0).batch_size() == 8);
  REQUIRE(fds.size() == 1);
  REQUIRE(write(fds[0], "z", 1) == 1);  // the child's copy of the pipe's write end
  char c = 0;
  REQUIRE(read(pipe_fds[0], &c, 1) == 1);
  CHECK(c == 'z');
  close(fds[0]);
  close(pipe_fds[0]);

  // The child has exited and closed its end: the next Receive says so.
  CHECK(parent_end.Receive(&report).code() == absl::StatusCode::kUnavailable);
}

TEST_CASE("a closed peer: queued frames first, then Unavailable \"peer closed\"",
          "[frame_channel]") {
  auto [a, b] = MakePair();
  REQUIRE(a.Send(SampleResult(1)).ok());
  a.Close();
  InferResult received;
  REQUIRE(b.Receive(&received).ok());  // sent before the close: still delivered
  CHECK(received.call_id() == 1);
  absl::Status status = b.Receive(&received);
  CHECK(status.code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(status.message()), Contains("peer closed"));
  status = b.Receive(&received);  // and it stays so
  CHECK(status.code() == absl::StatusCode::kUnavailable);
}

TEST_CASE("Send to a closed peer is Unavailable and raises no SIGPIPE", "[frame_channel]") {
  auto [a, b] = MakePair();
  b.Close();
  // In a child with SIGPIPE at its default action, so a SIGPIPE kills the child (and fails this
  // test) instead of the test binary. (Linux's SEQPACKET send path answers EPIPE without raising
  // SIGPIPE itself, unlike SOCK_STREAM; Send's MSG_NOSIGNAL keeps that so everywhere.)
  const int status = RunInChild([&a]() {
    signal(SIGPIPE, SIG_DFL);
    const absl::Status sent = a.Send(SampleResult(1));
    if (sent.code() != absl::StatusCode::kUnavailable) return 1;
    if (std::string(sent.message()).find("peer closed") == std::string::npos) return 2;
    return 0;
  });
  CHECK_FALSE(WIFSIGNALED(status));
  CHECK(ExitedWith(status, 0));
}

TEST_CASE("Receive on a non-blocking fd with no frame is DeadlineExceeded", "[frame_channel]") {
  auto [a, b] = MakePair();
  SetNonBlocking(b.fd());
  InferResult received;
  const absl::Status status = b.Receive(&received);
  CHECK(status.code() == absl::StatusCode::kDeadlineExceeded);
  CHECK_THAT(std::string(status.message()), Contains("EAGAIN"));
  REQUIRE(a.Send(SampleResult(5)).ok());
  REQUIRE(b.Receive(&received).ok());  // a frame that is there is still read
  CHECK(received.call_id() == 5);
}

TEST_CASE("garbage datagrams are DataLoss and the channel stays usable", "[frame_channel]") {
  auto [a, b] = MakePair();
  InferResult received;

  // Wrong header byte.
  const std::string bad_header = "\xff\x08\x01";
  REQUIRE(send(a.fd(), bad_header.data(), bad_header.size(), 0) ==
          static_cast<ssize_t>(bad_header.size()));
  absl::Status status = b.Receive(&received);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(status.message()), Contains("header"));

  // Right header, bytes that are no InferResult (field 0 / wire type 7 is invalid).
  std::string bad_body(1, static_cast<char>(kFrameVersion));
  bad_body += "\xff\xff\xff\xff";
  REQUIRE(send(a.fd(), bad_body.data(), bad_body.size(), 0) ==
          static_cast<ssize_t>(bad_body.size()));
  status = b.Receive(&received);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(status.message()), Contains("does not parse"));

  REQUIRE(a.Send(SampleResult(9)).ok());
  REQUIRE(b.Receive(&received).ok());
  CHECK(received.call_id() == 9);
}

TEST_CASE("a datagram over kMaxFrameBytes is DataLoss (truncated)", "[frame_channel]") {
  auto [a, b] = MakePair();
  if (const std::string why = SendBufferShortOfMaxFrame(a.fd()); !why.empty()) KILN_SKIP(why);
  std::string huge(kMaxFrameBytes + 100, '\x08');
  huge[0] = static_cast<char>(kFrameVersion);
  REQUIRE(send(a.fd(), huge.data(), huge.size(), 0) == static_cast<ssize_t>(huge.size()));
  InferResult received;
  const absl::Status status = b.Receive(&received);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(status.message()), Contains("truncated"));
  // The rest of that datagram is gone, not read as the next frame.
  REQUIRE(a.Send(SampleResult(10)).ok());
  REQUIRE(b.Receive(&received).ok());
  CHECK(received.call_id() == 10);
}

TEST_CASE("WaitReadable times out without a frame and is true with one or on EOF",
          "[frame_channel]") {
  auto [a, b] = MakePair();
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(b.WaitReadable(50));
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= std::chrono::milliseconds(45));
  CHECK_FALSE(b.WaitReadable(0));

  REQUIRE(a.Send(SampleResult(1)).ok());
  CHECK(b.WaitReadable(0));
  CHECK(b.WaitReadable(-1));
  InferResult received;
  REQUIRE(b.Receive(&received).ok());
  CHECK_FALSE(b.WaitReadable(0));

  // A frame sent later from another thread wakes an infinite wait.
  std::thread sender([&a]() {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    (void)a.Send(SampleResult(2));
  });
  CHECK(b.WaitReadable(-1));
  sender.join();
  REQUIRE(b.Receive(&received).ok());

  a.Close();
  CHECK(b.WaitReadable(1000));  // EOF is readable: Receive then says "peer closed"
  CHECK(b.Receive(&received).code() == absl::StatusCode::kUnavailable);

  FrameChannel empty;
  CHECK_FALSE(empty.WaitReadable(0));
}

TEST_CASE("Send on one thread while Receive runs on another", "[frame_channel]") {
  auto [a, b] = MakePair();
  constexpr uint64_t kFrames = 2000;
  std::thread sender([&a]() {
    for (uint64_t i = 0; i < kFrames; ++i) {
      InferResult result = SampleResult(i);
      result.set_message(std::string(i % 5000, 'p'));
      if (!a.Send(result).ok()) return;
    }
  });
  // Meanwhile this end also sends back to `a` (full duplex), which nobody reads until later.
  uint64_t in_order = 0;
  for (uint64_t i = 0; i < kFrames; ++i) {
    InferResult received;
    if (!b.Receive(&received).ok()) break;
    if (received.call_id() == i && received.message().size() == i % 5000) ++in_order;
    if (i % 100 == 0) REQUIRE(b.Send(SampleResult(i)).ok());
  }
  sender.join();
  CHECK(in_order == kFrames);
  SetNonBlocking(a.fd());
  int replies = 0;
  InferResult reply;
  while (a.Receive(&reply).ok()) ++replies;
  CHECK(replies == 20);
}

TEST_CASE("move, Release and Close", "[frame_channel]") {
  auto [a, b] = MakePair();
  const int fd = a.fd();
  FrameChannel moved(std::move(a));
  CHECK(moved.fd() == fd);
  CHECK(a.fd() == -1);  // NOLINT(bugprone-use-after-move): documented moved-from state
  CHECK(a.Send(SampleResult(1)).code() == absl::StatusCode::kFailedPrecondition);
  InferResult received;
  CHECK(a.Receive(&received).code() == absl::StatusCode::kFailedPrecondition);

  FrameChannel assigned;
  assigned = std::move(moved);
  CHECK(assigned.fd() == fd);
  REQUIRE(assigned.Send(SampleResult(3)).ok());
  REQUIRE(b.Receive(&received).ok());
  CHECK(received.call_id() == 3);

  const int released = assigned.Release();
  CHECK(released == fd);
  CHECK(assigned.fd() == -1);
  CHECK(fcntl(released, F_GETFD) >= 0);  // still open: the caller owns it now
  FrameChannel readopted(released);
  readopted.Close();
  readopted.Close();  // idempotent
  CHECK(readopted.fd() == -1);
  CHECK(fcntl(released, F_GETFD) == -1);  // closed
  CHECK(b.Receive(&received).code() == absl::StatusCode::kUnavailable);
}

// --- SharedArena ---------------------------------------------------------------------------

TEST_CASE("Create rounds up to the page size and zero-fills", "[arena]") {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  absl::StatusOr<std::unique_ptr<SharedArena>> one = SharedArena::Create("one", 1);
  REQUIRE(one.ok());
  CHECK((*one)->size() == page);
  CHECK((*one)->data() != nullptr);
  CHECK((*one)->data()[0] == 0);
  CHECK((*one)->data()[page - 1] == 0);
  CHECK((fcntl((*one)->fd(), F_GETFD) & FD_CLOEXEC) != 0);

  char link[256] = {};
  const std::string proc = "/proc/self/fd/" + std::to_string((*one)->fd());
  REQUIRE(readlink(proc.c_str(), link, sizeof(link) - 1) > 0);
  CHECK_THAT(std::string(link), Contains("memfd:kiln-arena-one"));

  absl::StatusOr<std::unique_ptr<SharedArena>> exact = SharedArena::Create("exact", page);
  REQUIRE(exact.ok());
  CHECK((*exact)->size() == page);
  absl::StatusOr<std::unique_ptr<SharedArena>> more = SharedArena::Create("more", page + 1);
  REQUIRE(more.ok());
  CHECK((*more)->size() == 2 * page);
  (*more)->data()[2 * page - 1] = 1;  // the whole rounded size is mapped

  absl::StatusOr<std::unique_ptr<SharedArena>> zero = SharedArena::Create("zero", 0);
  CHECK(zero.status().code() == absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<SharedArena>> huge =
      SharedArena::Create("huge", std::numeric_limits<size_t>::max());
  CHECK_FALSE(huge.ok());

  absl::StatusOr<std::unique_ptr<SharedArena>> long_name =
      SharedArena::Create(std::string(400, 'n'), 1);
  CHECK(long_name.ok());
}

TEST_CASE("Adopt of a dup'd fd maps the same pages", "[arena]") {
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("adopt", 3 * 4096);
  REQUIRE(arena.ok());
  const int copy = fcntl((*arena)->fd(), F_DUPFD_CLOEXEC, 0);
  REQUIRE(copy >= 0);
  absl::StatusOr<std::unique_ptr<SharedArena>> adopted = SharedArena::Adopt(copy);
  REQUIRE(adopted.ok());
  CHECK((*adopted)->fd() == copy);
  CHECK((*adopted)->size() == (*arena)->size());
  CHECK((*adopted)->data() != (*arena)->data());

  const size_t last = (*arena)->size() - 1;
  (*arena)->data()[0] = 11;
  (*arena)->data()[last] = 22;
  CHECK((*adopted)->data()[0] == 11);
  CHECK((*adopted)->data()[last] == 22);
  (*adopted)->data()[4096] = 33;
  CHECK((*arena)->data()[4096] == 33);

  // Destroying one view leaves the other (and the pages) intact.
  adopted->reset();
  CHECK(fcntl(copy, F_GETFD) == -1);  // the adopted fd was closed with it
  CHECK((*arena)->data()[4096] == 33);
}

TEST_CASE("Adopt refuses bad fds and closes what it was given", "[arena]") {
  CHECK(SharedArena::Adopt(-1).status().code() == absl::StatusCode::kInvalidArgument);

  const int empty = memfd_create("kiln-test-empty", MFD_CLOEXEC);
  REQUIRE(empty >= 0);
  absl::StatusOr<std::unique_ptr<SharedArena>> from_empty = SharedArena::Adopt(empty);
  CHECK_FALSE(from_empty.ok());
  CHECK_THAT(std::string(from_empty.status().message()), Contains("empty"));
  CHECK(fcntl(empty, F_GETFD) == -1);

  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  CHECK_FALSE(SharedArena::Adopt(pipe_fds[0]).ok());
  CHECK(fcntl(pipe_fds[0], F_GETFD) == -1);
  close(pipe_fds[1]);

  int closed_fd = dup(STDIN_FILENO);
  REQUIRE(closed_fd >= 0);
  close(closed_fd);
  absl::StatusOr<std::unique_ptr<SharedArena>> from_closed = SharedArena::Adopt(closed_fd);
  CHECK_FALSE(from_closed.ok());
  CHECK_THAT(std::string(from_closed.status().message()), Contains("fstat"));
}

TEST_CASE("an arena is shared across fork(): the child writes, the parent reads", "[arena]") {
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("fork", 64 * 1024);
  REQUIRE(arena.ok());
  uint8_t* data = (*arena)->data();
  const size_t size = (*arena)->size();
  const int status = RunInChild([data, size]() {
    for (size_t i = 0; i < size; ++i) data[i] = static_cast<uint8_t>(i * 7 + 1);
    return 0;
  });
  REQUIRE(ExitedWith(status, 0));
  size_t matching = 0;
  for (size_t i = 0; i < size; ++i) matching += data[i] == static_cast<uint8_t>(i * 7 + 1);
  CHECK(matching == size);
}

TEST_CASE("the master/worker flow: arena fd over a channel to a forked worker",
          "[arena][frame_channel]") {
  auto [master, worker] = MakePair();
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("worker0", 1 << 16);
  REQUIRE(arena.ok());
  std::memcpy((*arena)->data(), "input", 5);

  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The worker: a fresh process would only have the channel; get the arena from a frame.
    master.Close();
    InferResult hello;
    std::vector<int> fds;
    if (!worker.Receive(&hello, &fds).ok() || fds.size() != 1) _exit(1);
    absl::StatusOr<std::unique_ptr<SharedArena>> mine = SharedArena::Adopt(fds[0]);
    if (!mine.ok()) _exit(2);
    if (std::memcmp((*mine)->data(), "input", 5) != 0) _exit(3);
    const uint64_t offset = SharedArena::Align(5);
    if (!(*mine)->Fits(offset, 6)) _exit(4);
    std::memcpy((*mine)->data() + offset, "output", 6);
    InferResult result;
    result.set_call_id(hello.call_id());
    TensorRef* out = result.add_outputs();
    out->set_offset(offset);
    out->set_nbytes(6);
    _exit(worker.Send(result).ok() ? 0 : 5);
  }
  worker.Close();
  REQUIRE(master.Send(SampleResult(42), {(*arena)->fd()}).ok());
  InferResult result;
  const absl::Status received = master.Receive(&result);
  int wait_status = 0;
  REQUIRE(waitpid(child, &wait_status, 0) == child);
  CHECK(ExitedWith(wait_status, 0));
  REQUIRE(received.ok());
  CHECK(result.call_id() == 42);
  REQUIRE(result.outputs_size() == 1);
  CHECK(result.outputs(0).offset() == kArenaAlignment);
  CHECK(std::memcmp((*arena)->data() + result.outputs(0).offset(), "output", 6) == 0);
}

TEST_CASE("Fits: edges, empty ranges and overflow", "[arena]") {
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("fits", 4096);
  REQUIRE(arena.ok());
  const SharedArena& a = **arena;
  const uint64_t size = a.size();
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

  CHECK(a.Fits(0, size));
  CHECK(a.Fits(0, 0));
  CHECK(a.Fits(size - 1, 1));
  CHECK(a.Fits(size, 0));  // an empty range at the very end
  CHECK(a.Fits(64, size - 64));
  CHECK_FALSE(a.Fits(0, size + 1));
  CHECK_FALSE(a.Fits(size - 1, 2));
  CHECK_FALSE(a.Fits(size, 1));
  CHECK_FALSE(a.Fits(size + 1, 0));
  CHECK_FALSE(a.Fits(1, size));
  // offset + n wraps around to something small: must not fit.
  CHECK_FALSE(a.Fits(1, kMax));
  CHECK_FALSE(a.Fits(kMax, 1));
  CHECK_FALSE(a.Fits(kMax, 0));
  CHECK_FALSE(a.Fits(64, kMax - 63));  // 64 + (kMax - 63) == 0 mod 2^64
  CHECK_FALSE(a.Fits(0, kMax));
}

TEST_CASE("Align rounds up to 64 bytes", "[arena]") {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  CHECK(kArenaAlignment == 64);
  CHECK(SharedArena::Align(0) == 0);
  CHECK(SharedArena::Align(1) == 64);
  CHECK(SharedArena::Align(63) == 64);
  CHECK(SharedArena::Align(64) == 64);
  CHECK(SharedArena::Align(65) == 128);
  CHECK(SharedArena::Align(4000) == 4032);
  CHECK(SharedArena::Align(kMax - 63) == kMax - 63);  // already aligned: 2^64 - 64
  CHECK(SharedArena::Align(kMax - 62) == kMax);       // would wrap: saturates
  CHECK(SharedArena::Align(kMax) == kMax);
}

TEST_CASE("tensors written to an arena come back as views of the same bytes", "[arena]") {
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("refs", 4096);
  REQUIRE(arena.ok());
  const std::vector<float> a = {1.5f, -2.0f, 3.25f};
  const std::vector<int64_t> b = {7, 8};
  const std::vector<TensorView> tensors = {
      {"a", DType::kFloat32, {3}, a.data(), a.size() * sizeof(float)},
      {"b", DType::kInt64, {1, 2}, b.data(), b.size() * sizeof(int64_t)}};
  internal::InferCall call;
  absl::StatusOr<uint64_t> end = WriteToArena(tensors, 1, **arena, *call.mutable_inputs());
  REQUIRE(end.ok());
  REQUIRE(call.inputs_size() == 2);
  CHECK(call.inputs(0).offset() == kArenaAlignment);  // offset 1 rounded up
  CHECK(call.inputs(1).offset() == 2 * kArenaAlignment);
  CHECK(*end == 3 * kArenaAlignment);

  absl::StatusOr<std::vector<TensorView>> views = ViewsInArena(call.inputs(), **arena);
  REQUIRE(views.ok());
  REQUIRE(views->size() == 2);
  for (size_t i = 0; i < tensors.size(); ++i) {
    CHECK((*views)[i].name == tensors[i].name);
    CHECK((*views)[i].dtype == tensors[i].dtype);
    CHECK((*views)[i].shape == tensors[i].shape);
    REQUIRE((*views)[i].nbytes == tensors[i].nbytes);
    CHECK(std::memcmp((*views)[i].data, tensors[i].data, tensors[i].nbytes) == 0);
  }
}

TEST_CASE("a batch of requests is written as one tensor per input, their rows in order",
          "[arena]") {
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("batch", 4096);
  REQUIRE(arena.ok());
  const std::vector<float> x1 = {1, 2}, x2 = {3, 4, 5, 6}, x3 = {7, 8};
  const std::vector<int64_t> m1 = {10}, m2 = {20, 30}, m3 = {40};
  const std::vector<TensorView> first = {{"x", DType::kFloat32, {1, 2}, x1.data(), 8},
                                         {"m", DType::kInt64, {1, 1}, m1.data(), 8}};
  const std::vector<TensorView> second = {{"x", DType::kFloat32, {2, 2}, x2.data(), 16},
                                          {"m", DType::kInt64, {2, 1}, m2.data(), 16}};
  const std::vector<TensorView> third = {{"x", DType::kFloat32, {1, 2}, x3.data(), 8},
                                         {"m", DType::kInt64, {1, 1}, m3.data(), 8}};
  internal::InferCall call;
  absl::StatusOr<uint64_t> end =
      WriteBatchToArena({&first, &second, &third}, 0, **arena, *call.mutable_inputs());
  REQUIRE(end.ok());
  absl::StatusOr<std::vector<TensorView>> views = ViewsInArena(call.inputs(), **arena);
  REQUIRE(views.ok());
  REQUIRE(views->size() == 2);
  CHECK((*views)[0].name == "x");
  CHECK((*views)[0].shape == std::vector<int64_t>{4, 2});
  std::vector<float> x(8);
  REQUIRE((*views)[0].nbytes == x.size() * sizeof(float));
  std::memcpy(x.data(), (*views)[0].data, (*views)[0].nbytes);
  CHECK(x == std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8});
  CHECK((*views)[1].shape == std::vector<int64_t>{4, 1});
  std::vector<int64_t> m(4);
  REQUIRE((*views)[1].nbytes == m.size() * sizeof(int64_t));
  std::memcpy(m.data(), (*views)[1].data, (*views)[1].nbytes);
  CHECK(m == std::vector<int64_t>{10, 20, 30, 40});
  // A batch too large for the end it may use is refused whole, naming the tensor.
  internal::InferCall small;
  const absl::StatusOr<uint64_t> refused =
      WriteBatchToArena({&first, &second, &third}, 0, **arena, *small.mutable_inputs(), 90);
  CHECK(refused.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(refused.status().message()),
             Catch::Matchers::Contains("tensor 'm' (32 bytes at offset 64)"));
}

TEST_CASE("a tensor that does not fit, or a ref outside the arena, is an error", "[arena]") {
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("small", 1);
  REQUIRE(arena.ok());
  std::vector<uint8_t> big((*arena)->size() + 1, 0);
  internal::InferCall call;
  absl::StatusOr<uint64_t> end = WriteToArena(
      {{"big", DType::kUInt8, {static_cast<int64_t>(big.size())}, big.data(), big.size()}}, 0,
      **arena, *call.mutable_inputs());
  REQUIRE_FALSE(end.ok());
  CHECK(end.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(end.status().message()), Catch::Matchers::Contains("tensor 'big'"));

  internal::TensorRef& ref = *call.add_inputs();
  ref.set_name("outside");
  ref.set_dtype("F32");
  ref.set_offset((*arena)->size());
  ref.set_nbytes(4);
  CHECK_FALSE(ViewsInArena(call.inputs(), **arena).ok());
  ref.set_offset(0);
  ref.set_dtype("F33");
  CHECK_FALSE(ViewsInArena(call.inputs(), **arena).ok());
}

// --- text batches in the arena ---------------------------------------------------------------

TEST_CASE("a text batch round-trips through the arena, empty and binary strings included",
          "[arena][text]") {
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("text", 4096);
  REQUIRE(arena.ok());
  const std::string binary("a\0b\xff\0", 5);
  const std::vector<std::string> rows = {"hello world", "", binary, std::string(300, 'x')};
  TensorRef ref;
  absl::StatusOr<uint64_t> end = WriteTextToArena("text", rows, 70, **arena, ref);
  REQUIRE(end.ok());
  CHECK(ref.name() == "text");
  CHECK(ref.dtype() == "BYTES");
  CHECK(std::vector<int64_t>(ref.shape().begin(), ref.shape().end()) == std::vector<int64_t>{4, 1});
  CHECK(ref.offset() == 2 * kArenaAlignment);  // 70 rounded up
  const uint64_t nbytes = 4 * 4 + 11 + 0 + 5 + 300;
  CHECK(ref.nbytes() == nbytes);
  CHECK(*end == SharedArena::Align(ref.offset() + nbytes));
  // The BYTES form: a 4-byte little-endian length, then the bytes.
  const uint8_t* first = (*arena)->data() + ref.offset();
  CHECK(std::vector<uint8_t>(first, first + 4) == std::vector<uint8_t>{11, 0, 0, 0});
  CHECK(std::string(reinterpret_cast<const char*>(first) + 4, 11) == "hello world");

  absl::StatusOr<std::vector<std::string>> back = TextInArena(ref, **arena);
  REQUIRE(back.ok());
  CHECK(*back == rows);
  CHECK((*back)[2].size() == 5);

  // A second batch written after the first leaves the first intact.
  TensorRef second;
  REQUIRE(WriteTextToArena("text", {"next"}, *end, **arena, second).ok());
  CHECK(second.offset() == *end);
  CHECK(*TextInArena(ref, **arena) == rows);
  CHECK(*TextInArena(second, **arena) == std::vector<std::string>{"next"});
}

TEST_CASE("a dynamic batch of text requests is one text batch of all their rows, in order",
          "[arena][text]") {
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("textbatch", 4096);
  REQUIRE(arena.ok());
  const std::vector<std::string> a = {"first", ""};
  const std::vector<std::string> b = {"second"};
  const std::vector<std::string> c = {"third", std::string(200, 'y')};
  TensorRef ref;
  absl::StatusOr<uint64_t> end = WriteTextBatchToArena("text", {&a, &b, &c}, 0, **arena, ref);
  REQUIRE(end.ok());
  CHECK(std::vector<int64_t>(ref.shape().begin(), ref.shape().end()) == std::vector<int64_t>{5, 1});
  CHECK(ref.nbytes() == 5 * 4 + 5 + 0 + 6 + 5 + 200);
  absl::StatusOr<std::vector<std::string>> back = TextInArena(ref, **arena);
  REQUIRE(back.ok());
  CHECK(*back == std::vector<std::string>{"first", "", "second", "third", std::string(200, 'y')});
  // All of it must fit before `end`: one byte short is refused.
  TensorRef over;
  const uint64_t a_and_c = 4 * 4 + 5 + 0 + 5 + 200;
  CHECK(WriteTextBatchToArena("text", {&a, &c}, 0, **arena, over, a_and_c).ok());
  absl::StatusOr<uint64_t> late =
      WriteTextBatchToArena("text", {&a, &c}, 0, **arena, over, a_and_c - 1);
  CHECK(late.status().code() == absl::StatusCode::kResourceExhausted);
}

TEST_CASE("an empty text batch round-trips as zero rows", "[arena][text]") {
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("text0", 64);
  REQUIRE(arena.ok());
  TensorRef ref;
  absl::StatusOr<uint64_t> end = WriteTextToArena("text", {}, 0, **arena, ref);
  REQUIRE(end.ok());
  CHECK(ref.nbytes() == 0);
  CHECK(std::vector<int64_t>(ref.shape().begin(), ref.shape().end()) == std::vector<int64_t>{0, 1});
  absl::StatusOr<std::vector<std::string>> back = TextInArena(ref, **arena);
  REQUIRE(back.ok());
  CHECK(back->empty());
}

TEST_CASE("a text batch that does not fit the arena is ResourceExhausted", "[arena][text]") {
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("textfull", 1);
  REQUIRE(arena.ok());
  const size_t size = (*arena)->size();
  TensorRef ref;
  // Exactly the arena: fits.
  REQUIRE(WriteTextToArena("text", {std::string(size - 4, 'a')}, 0, **arena, ref).ok());
  CHECK(*TextInArena(ref, **arena) == std::vector<std::string>{std::string(size - 4, 'a')});
  // One byte more: does not.
  TensorRef over;
  absl::StatusOr<uint64_t> end =
      WriteTextToArena("prompt", {std::string(size - 3, 'a')}, 0, **arena, over);
  REQUIRE_FALSE(end.ok());
  CHECK(end.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(end.status().message()), Contains("text input 'prompt'"));
  CHECK_THAT(std::string(end.status().message()), Contains(std::to_string(size + 1) + " bytes"));
  // A batch that fits from offset 0 does not fit from near the end of the arena.
  absl::StatusOr<uint64_t> late = WriteTextToArena("text", {"abc"}, size - 1, **arena, over);
  REQUIRE_FALSE(late.ok());
  CHECK(late.status().code() == absl::StatusCode::kResourceExhausted);
}

TEST_CASE("a corrupted text ref is Internal, never read past its bytes", "[arena][text]") {
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("textbad", 4096);
  REQUIRE(arena.ok());
  TensorRef good;
  REQUIRE(WriteTextToArena("text", {"abc", "de"}, 0, **arena, good).ok());
  REQUIRE(good.nbytes() == 4 + 3 + 4 + 2);
  REQUIRE(TextInArena(good, **arena).ok());

  TensorRef ref = good;
  std::string why;
  SECTION("a dtype other than BYTES") {
    ref.set_dtype("F32");
    why = "not a BYTES batch";
  }
  SECTION("no shape") {
    ref.clear_shape();
    why = "not a BYTES batch";
  }
  SECTION("a negative row count") {
    ref.set_shape(0, -1);
    why = "not a BYTES batch";
  }
  SECTION("outside the arena") {
    ref.set_offset((*arena)->size() - 4);
    why = "outside the arena";
  }
  SECTION("cut inside the second length") {
    ref.set_nbytes(4 + 3 + 2);
    why = "element 1's 4-byte length is truncated (2 bytes left)";
  }
  SECTION("cut inside the second string") {
    ref.set_nbytes(4 + 3 + 4 + 1);
    why = "element 1's length 2 runs past the end (1 bytes left)";
  }
  SECTION("more rows than the bytes hold") {
    ref.set_shape(0, 3);
    why = "2 elements, expected 3";
  }
  SECTION("trailing bytes after the last row") {
    ref.set_nbytes(good.nbytes() + 1);
    why = "trailing bytes after the";
  }
  SECTION("fewer rows than the bytes hold") {
    ref.set_shape(0, 1);
    why = "trailing bytes after the";
  }
  SECTION("a length that runs past the end") {
    (*arena)->data()[good.offset() + 4 + 3] = 200;  // the second string's length: 200
    why = "element 1's length 200 runs past the end";
  }
  absl::StatusOr<std::vector<std::string>> back = TextInArena(ref, **arena);
  REQUIRE_FALSE(back.ok());
  CHECK(back.status().code() == absl::StatusCode::kInternal);
  CHECK_THAT(std::string(back.status().message()), Contains("bad text ref 'text'"));
  CHECK_THAT(std::string(back.status().message()), Contains(why));
}

}  // namespace
}  // namespace kiln
