#include "common/fork_safety.h"

#include <catch2/catch.hpp>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "tests/run_command.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;

// The notes are process-wide, so each scenario runs in a child of its own; the child writes the
// check's message (empty when OK) to a pipe.
std::string CheckInChild(const std::function<void()>& before) {
  const testing::CommandResult child = testing::RunInChild([&before](std::string* message) {
    before();
    const absl::Status status = CheckForkSafe("a test fork");
    *message = std::string(status.message());
    return status.ok() ? 0 : 3;
  });
  REQUIRE(child.exit_code >= 0);
  CHECK((child.exit_code == 0) == child.output.empty());
  return child.output;
}

TEST_CASE("a fresh single-threaded process may fork", "[fork]") {
  CHECK(CheckInChild([] {}).empty());
}

TEST_CASE("a second thread stops the fork", "[fork]") {
  const std::string message = CheckInChild([] {
    // A thread that lives until the process exits.
    static std::mutex mu;
    static std::condition_variable never;
    std::thread([] {
      std::unique_lock<std::mutex> lock(mu);
      never.wait(lock, [] { return false; });
    }).detach();
  });
  CHECK_THAT(message, Contains("refusing to fork a test fork"));
  CHECK_THAT(message, Contains("2 threads are running"));
}

TEST_CASE("a gRPC object, a forward pass on threads or a CUDA call stops the fork", "[fork]") {
  CHECK_THAT(CheckInChild(NoteGrpcObjectCreated), Contains("a gRPC object was created"));
  CHECK_THAT(CheckInChild([] { NoteForwardPass(2); }),
             Contains("a forward pass ran on 2 intra-op threads"));
  CHECK_THAT(CheckInChild(NoteCudaCall), Contains("CUDA was called"));
}

TEST_CASE("forward passes on one intra-op thread (a warm template's) do not stop the fork",
          "[fork]") {
  CHECK(CheckInChild([] {
          NoteForwardPass(1);
          NoteForwardPass(1);
        }).empty());
  CHECK_THAT(CheckInChild(NoteCudaCall), Contains("CUDA was called"));
}

TEST_CASE("ForkChecked refuses without forking", "[fork]") {
  const std::string message = CheckInChild([] {
    NoteForwardPass(4);
    absl::StatusOr<pid_t> pid = ForkChecked("the zygote");
    // Only one process gets here: a fork would have made two writers.
    if (pid.ok()) _exit(4);
  });
  CHECK_THAT(message, Contains("a forward pass ran"));
}

TEST_CASE("CountThreads counts this process's threads", "[fork]") {
  const int before = CountThreads();
  REQUIRE(before >= 1);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::thread thread([&] {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return release; });
  });
  CHECK(CountThreads() == before + 1);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_one();
  thread.join();
}

}  // namespace
}  // namespace kiln
