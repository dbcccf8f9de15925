// Starting kiln-server as a child of kiln-bench (for `coldstart`), looking at its process group
// and its memory, and stopping it so that nothing of it survives. Spawning, the process tree and
// the free port are common/process.h's.
//
// The helpers above LaunchedServer are pure functions of their arguments or read /proc only:
// safe from any thread, testable without a server.
#ifndef KILN_BENCH_SERVER_LAUNCHER_H_
#define KILN_BENCH_SERVER_LAUNCHER_H_

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/process.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"

namespace kiln::bench {

// --- the command line ----------------------------------------------------------------------

// One kiln-server launch, as coldstart configures it.
struct ServerCommand {
  std::string binary;  // path of the kiln-server executable
  std::string model_repository;
  int port = 0;
  std::string lock_dir;
  int64_t workers = 1;
  bool warmup = true;
  bool share_weights = true;
  int metrics_port = 0;                 // 0 = no metrics endpoint
  std::vector<std::string> extra_args;  // appended as they are
};

// The flags coldstart sets itself, which --server_args may not repeat.
inline constexpr const char* kManagedServerFlags[] = {
    "model_repository", "host", "port", "lock_dir", "workers", "warmup", "share_weights"};

// argv of the launch: binary --model_repository=DIR --host=127.0.0.1 --port=P --lock_dir=L
// --workers=N --warmup=on|off --share_weights=on|off --metrics_port=M extra_args...
std::vector<std::string> ServerArgv(const ServerCommand& command);

// Splits --server_args on whitespace (no quoting). Every word must be a flag "--name" or
// "--name=value" and none of kManagedServerFlags; anything else is an InvalidArgument naming the
// word (and, for a managed flag, the coldstart flag to use instead).
absl::StatusOr<std::vector<std::string>> SplitServerArgs(absl::string_view text);

// True when `path` is a regular file this process may execute.
bool IsExecutableFile(const std::string& path);

// `name` when it contains a '/'; otherwise the first executable `<dir>/name` for dir in
// `path_env` (a $PATH value, ':'-separated; an empty entry is the current directory). "" when
// there is none.
std::string FindExecutable(const std::string& name, const std::string& path_env);

// The kiln-server to start by default: `<dir of self_exe>/../server/kiln-server` (the build
// tree's layout) when that is executable, else "kiln-server" found in `path_env`; "" when
// neither. `self_exe` is kiln-bench's own binary (/proc/self/exe resolved).
std::string DefaultServerBinary(const std::string& self_exe, const std::string& path_env);

// A fresh directory `$TMPDIR/<prefix>-XXXXXX` (TMPDIR unset or empty: /tmp).
absl::StatusOr<std::string> MakeTempDir(absl::string_view prefix);

// MakeTempDir("kiln-<command>"): the work directory of one run of `kiln-bench <command>`;
// std::nullopt, with "kiln-bench <command>: <why>" on `err`, when it cannot be made.
std::optional<std::string> MakeRunDir(absl::string_view command, std::ostream& err);

// The last `max_lines` lines of the file at `path` (at most its last 64 KiB); "" when unreadable.
std::string FileTail(const std::string& path, size_t max_lines);

// --- /proc -----------------------------------------------------------------------------------

// The total PSS of a process tree.
struct TreeMemory {
  size_t processes = 0;  // how many processes were counted
  int64_t pss_kb = 0;
};
// Sums "Pss:" of /proc/<pid>/smaps_rollup over ProcessTree(root). A descendant that vanishes
// while it is read is skipped; an unreadable or malformed file for `root` (or a root that is gone)
// is an error naming the file.
absl::StatusOr<TreeMemory> TreePss(pid_t root);

// The live (not zombie) processes whose process group is `pgid`, by a scan of /proc.
std::vector<pid_t> ProcessGroupMembers(pid_t pgid);

// --- the child process -----------------------------------------------------------------------

// A kiln-server started by this process: the master leads a process group of its own (the zygote
// and the workers inherit it), stdin is /dev/null, stdout and stderr go to a log file, and the
// master gets SIGKILL if the thread that started it exits (PR_SET_PDEATHSIG), so an interrupted
// kiln-bench leaves no server behind.
//
// Ownership: owns the process group. The master is reaped only once no process of its group is
// left, so its pid (the group id) cannot be reused while the group is signalled. The destructor
// SIGKILLs the group, waits (bounded) until it is empty and reaps the master: no error path
// leaves a server running. Thread-safety: PeekExit() and the accessors may be called from any
// thread until Stop() or the destructor runs; everything else from the owning thread only.
class LaunchedServer {
 public:
  // SpawnInProcessGroup(argv, inherited environment, log_path). Fails when the log cannot be
  // opened or fork fails; an exec failure shows as exit code 127 (and a line in the log).
  // `name` is what messages call the server ("kiln-server", "the naive server").
  static absl::StatusOr<std::unique_ptr<LaunchedServer>> Start(const std::vector<std::string>& argv,
                                                               const std::string& log_path,
                                                               std::string name = "kiln-server");
  ~LaunchedServer();
  LaunchedServer(const LaunchedServer&) = delete;
  LaunchedServer& operator=(const LaunchedServer&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  const std::string& log_path() const { return log_path_; }
  // Taken just before the spawn: the start of "time to SERVING".
  std::chrono::steady_clock::time_point started_at() const { return started_at_; }

  // How the master ended, once it has, without reaping it; std::nullopt while it runs.
  std::optional<ExitStatus> PeekExit() const;

  // How Stop() went.
  struct StopResult {
    ExitStatus exit;      // the master's
    bool killed = false;  // it did not exit within the grace period and was SIGKILLed
  };
  // SIGTERM to the master (a graceful drain; the zygote and workers ignore TERM and follow the
  // master), waits up to `grace` for it to exit, else SIGKILLs the process group; then waits until
  // no process of the group is left (SIGKILLing it again after a few seconds) and reaps the master.
  // An error when a process of the group survives all that. Call at most once.
  absl::StatusOr<StopResult> Stop(std::chrono::milliseconds grace);

 private:
  LaunchedServer(pid_t pid, std::string log_path, std::chrono::steady_clock::time_point started,
                 std::string name);
  // SIGKILL the group until it is empty (bounded); false when a process survives.
  bool KillGroupAndWait(std::chrono::milliseconds timeout);

  pid_t pid_;
  std::string log_path_;
  std::chrono::steady_clock::time_point started_at_;
  std::string name_;
  bool reaped_ = false;
};

// The flags every command that starts kiln-server checks alike: the repository must be a
// directory holding <model>/config.pbtxt; the server an executable (`server_flag` as given, found
// in $PATH when it has no '/'; empty: DefaultServerBinary of /proc/self/exe); the --json file's
// directory must exist; --log_dir is created when missing. Returns the first problem, or "" and
// the server's path in `server`. With `need_server` false (a command that starts another server
// instead) the server is not looked for and `server` is left as it is.
std::string ValidateLaunchFlags(const std::string& repository, const std::string& model,
                                const std::string& server_flag, const std::string& json_path,
                                const std::string& log_dir, std::string* server,
                                bool need_server = true);

// --- waiting for SERVING -------------------------------------------------------------------

// A channel of its own (no subchannel shared with an earlier one) that reconnects quickly while
// the port is still closed, so that a Watch connects within ~100 ms of the port opening.
std::shared_ptr<grpc::Channel> ServerChannel(const std::string& address);

// " (kiln-server exited: exit code 1)" once the server has exited (by its name()), else "".
std::string ExitNote(const LaunchedServer& server);

// Watches health service "" of `server` from before its port opens until it reports SERVING;
// returns the moment it did. Fails when the server exits first (the call is cancelled by a thread
// that polls the master), the stream ends, or `deadline` passes (the message says what the
// deadline was: `timeout_flag`, e.g. "--timeout_s=300 s").
absl::StatusOr<std::chrono::steady_clock::time_point> WaitServing(
    grpc::health::v1::Health::Stub& stub, const LaunchedServer& server,
    std::chrono::steady_clock::time_point deadline, const std::string& timeout_flag);

}  // namespace kiln::bench

#endif  // KILN_BENCH_SERVER_LAUNCHER_H_
