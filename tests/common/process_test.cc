// common/process: the /proc tree walk on a forked child, the free port, PollUntil, and
// SpawnInProcessGroup on stand-in commands (/bin/sh -c, /bin/sleep).
#include "common/process.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::TempDir;

constexpr std::chrono::seconds kTimeout(10);

bool Has(const std::vector<pid_t>& pids, pid_t pid) {
  return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The value of the line "<name>:\t<value>" of /proc/<pid>/status; "" when there is none.
std::string StatusLine(pid_t pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + ":", 0) == 0)
      return line.substr(line.find_first_not_of(" \t:", name.size()));
  }
  return "";
}

// True once `pid` runs the program named `comm` (its exec happened).
bool Runs(pid_t pid, const std::string& comm) {
  return ReadFile("/proc/" + std::to_string(pid) + "/comm") == comm + "\n";
}

// Waits for the child `pid` to exit, then reaps it; how it ended, or std::nullopt when it did
// not within kTimeout (it is SIGKILLed and reaped all the same).
std::optional<ExitStatus> WaitAndReap(pid_t pid) {
  const bool exited = PollUntil([&] { return PeekChildExit(pid).has_value(); }, kTimeout);
  const std::optional<ExitStatus> exit = PeekChildExit(pid);
  if (!exited) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);  // in case it leads no group
  }
  waitpid(pid, nullptr, 0);
  return exited ? exit : std::nullopt;
}

// --- /proc -------------------------------------------------------------------------------------

TEST_CASE("the process tree holds a forked child until it exits", "[process][proc]") {
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    close(fds[1]);
    char byte;
    (void)!read(fds[0], &byte, 1);  // until the parent closes its end
    _exit(0);
  }
  close(fds[0]);
  const std::vector<pid_t> tree = ProcessTree(getpid());
  CHECK(!tree.empty());
  CHECK(tree.front() == getpid());
  CHECK(Has(tree, child));
  CHECK(Has(ChildrenOf(getpid()), child));
  CHECK(ProcessTree(child) == std::vector<pid_t>{child});
  CHECK(ChildrenOf(child).empty());
  const std::vector<std::string> fields = ProcStatFields(child);
  REQUIRE(fields.size() > 20);
  CHECK(fields[4 - 3] == std::to_string(getpid()));  // field 4: the parent

  close(fds[1]);  // release the child
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK_FALSE(Has(ProcessTree(getpid()), child));
  CHECK(ProcessTree(child).empty());
  CHECK(ProcStatFields(child).empty());
  CHECK(ChildrenOf(child).empty());
}

// --- odds and ends -----------------------------------------------------------------------------

TEST_CASE("a free loopback port can be bound", "[process]") {
  absl::StatusOr<int> port = FreeLoopbackPort();
  REQUIRE(port.ok());
  CHECK(*port > 0);
  CHECK(*port < 65536);
}

TEST_CASE("PollUntil returns once the predicate holds, or false after the timeout", "[process]") {
  int calls = 0;
  CHECK(PollUntil([&] { return ++calls == 3; }, kTimeout, std::chrono::milliseconds(1)));
  CHECK(calls == 3);
  calls = 0;
  CHECK(PollUntil([&] { return ++calls > 0; }, std::chrono::milliseconds(0)));
  CHECK(calls == 1);
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(PollUntil([] { return false; }, std::chrono::milliseconds(50)));
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(50));
}

// --- SpawnInProcessGroup -----------------------------------------------------------------------

TEST_CASE("a spawned command leads its own group, and its output, stdin and exit are as documented",
          "[process][spawn]") {
  TempDir dir;
  const std::string log = dir.WriteFile("child.log", "left from before\n");
  absl::StatusOr<pid_t> pid = SpawnInProcessGroup(
      {"/bin/sh", "-c", "echo out; echo err >&2; read line || echo stdin is empty; exit 3"},
      nullptr, log);
  REQUIRE(pid.ok());
  CHECK(getpgid(*pid) == *pid);  // a process group of its own
  REQUIRE(PollUntil([&] { return PeekChildExit(*pid).has_value(); }, kTimeout));
  CHECK(PeekChildExit(*pid) == ExitStatus{false, 3});
  CHECK(PeekChildExit(*pid)->Describe() == "exit code 3");
  CHECK(ProcStatFields(*pid).at(0) == "Z");  // peeked, not reaped
  REQUIRE(waitpid(*pid, nullptr, 0) == *pid);
  CHECK_FALSE(PeekChildExit(*pid).has_value());
  CHECK(ReadFile(log) == "out\nerr\nstdin is empty\n");  // the old log was truncated
}

TEST_CASE("a spawned command gets the environment it is given, or else inherits this one",
          "[process][spawn]") {
  TempDir dir;
  const std::string log = dir.path() + "/child.log";
  REQUIRE(setenv("KILN_PROCESS_TEST_INHERITED", "yes", 1) == 0);
  const std::vector<std::string> argv = {
      "/bin/sh", "-c", "echo \"[$KILN_PROCESS_TEST_GIVEN][$KILN_PROCESS_TEST_INHERITED]\""};

  const std::vector<std::string> env = {"KILN_PROCESS_TEST_GIVEN=42", "PATH=/usr/bin:/bin"};
  absl::StatusOr<pid_t> pid = SpawnInProcessGroup(argv, &env, log);
  REQUIRE(pid.ok());
  CHECK(WaitAndReap(*pid) == ExitStatus{false, 0});
  CHECK(ReadFile(log) == "[42][]\n");

  pid = SpawnInProcessGroup(argv, nullptr, log);
  REQUIRE(pid.ok());
  CHECK(WaitAndReap(*pid) == ExitStatus{false, 0});
  CHECK(ReadFile(log) == "[][yes]\n");
  unsetenv("KILN_PROCESS_TEST_INHERITED");
}

TEST_CASE("a spawned command starts with every signal at its default and none blocked",
          "[process][spawn]") {
  TempDir dir;
  // This process ignores TERM and blocks USR1 while it spawns: exec would keep both.
  struct sigaction ignore {
  }, old_term{};
  ignore.sa_handler = SIG_IGN;
  REQUIRE(sigaction(SIGTERM, &ignore, &old_term) == 0);
  sigset_t usr1, old_mask;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  REQUIRE(sigprocmask(SIG_BLOCK, &usr1, &old_mask) == 0);
  absl::StatusOr<pid_t> pid =
      SpawnInProcessGroup({"/bin/sleep", "1000"}, nullptr, dir.path() + "/child.log");
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  REQUIRE(pid.ok());

  REQUIRE(PollUntil([&] { return Runs(*pid, "sleep"); }, kTimeout));
  CHECK(StatusLine(*pid, "SigIgn") == "0000000000000000");
  CHECK(StatusLine(*pid, "SigBlk") == "0000000000000000");
  kill(*pid, SIGTERM);
  CHECK(WaitAndReap(*pid) == ExitStatus{true, SIGTERM});
}

TEST_CASE("a spawned command is killed when the thread that spawned it exits", "[process][spawn]") {
  TempDir dir;
  absl::StatusOr<pid_t> pid = absl::UnknownError("not spawned");
  std::thread spawner([&] {
    pid = SpawnInProcessGroup({"/bin/sleep", "1000"}, nullptr, dir.path() + "/child.log");
    // Past exec, PR_SET_PDEATHSIG is in place: only now may this thread exit.
    if (pid.ok()) PollUntil([&] { return Runs(*pid, "sleep"); }, kTimeout);
  });
  spawner.join();
  REQUIRE(pid.ok());
  CHECK(WaitAndReap(*pid) == ExitStatus{true, SIGKILL});
}

TEST_CASE("an exec failure exits 127 with a line in the log", "[process][spawn]") {
  TempDir dir;
  const std::string log = dir.path() + "/child.log";
  const std::string missing = dir.path() + "/no-such-command";
  absl::StatusOr<pid_t> pid = SpawnInProcessGroup({missing, "--flag"}, nullptr, log);
  REQUIRE(pid.ok());
  CHECK(WaitAndReap(*pid) == ExitStatus{false, 127});
  CHECK(ReadFile(log) == "exec of " + missing + " failed (errno " + std::to_string(ENOENT) + ")\n");
}

TEST_CASE("spawning fails without a command or without a log file", "[process][spawn]") {
  TempDir dir;
  absl::StatusOr<pid_t> pid = SpawnInProcessGroup({}, nullptr, dir.path() + "/child.log");
  CHECK(pid.status().code() == absl::StatusCode::kInvalidArgument);
  pid = SpawnInProcessGroup({"/bin/true"}, nullptr, dir.path() + "/no/such/dir/child.log");
  CHECK(pid.status().code() == absl::StatusCode::kNotFound);  // ENOENT
  CHECK_THAT(std::string(pid.status().message()), Contains("cannot open " + dir.path()));
}

}  // namespace
}  // namespace kiln
