#include "bench/server_launcher.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/oip_client.h"
#include "common/memory_probe.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/text_proto_file.h"

namespace kiln::bench {
namespace {

constexpr std::chrono::milliseconds kPollInterval(10);
// After the master exited, how long its zygote and workers may take to follow it (they get
// SIGKILL through PR_SET_PDEATHSIG) before the group is SIGKILLed.
constexpr std::chrono::milliseconds kGroupExitTimeout(5000);

}  // namespace

// --- the command line ----------------------------------------------------------------------

std::vector<std::string> ServerArgv(const ServerCommand& command) {
  std::vector<std::string> argv = {
      command.binary,
      absl::StrCat("--model_repository=", command.model_repository),
      "--host=127.0.0.1",
      absl::StrCat("--port=", command.port),
      absl::StrCat("--lock_dir=", command.lock_dir),
      absl::StrCat("--workers=", command.workers),
      absl::StrCat("--warmup=", command.warmup ? "on" : "off"),
      absl::StrCat("--share_weights=", command.share_weights ? "on" : "off"),
      // No metrics endpoint unless the command picked a free port for one (runs side by side
      // would all want the default port), or --server_args asks for one (it comes later and wins).
      absl::StrCat("--metrics_port=", command.metrics_port),
  };
  argv.insert(argv.end(), command.extra_args.begin(), command.extra_args.end());
  return argv;
}

absl::StatusOr<std::vector<std::string>> SplitServerArgs(absl::string_view text) {
  std::vector<std::string> words =
      absl::StrSplit(text, absl::ByAnyChar(" \t\n\r\v\f"), absl::SkipEmpty());
  for (const std::string& word : words) {
    const absl::string_view name = absl::string_view(word).substr(0, word.find('='));
    if (name.size() < 3 || name.substr(0, 2) != "--") {
      return absl::InvalidArgumentError(absl::StrCat(
          "--server_args: '", word, "' is not a flag (each word must be --name or --name=value)"));
    }
    for (const char* managed : kManagedServerFlags) {
      if (name.substr(2) != managed) continue;
      const bool own_flag = name == "--workers" || name == "--warmup" ||
                            name == "--share_weights" || name == "--model_repository";
      return absl::InvalidArgumentError(absl::StrCat(
          "--server_args: ", name, " is set by kiln-bench itself",
          own_flag ? absl::StrCat("; use the command's own ", name)
                   : std::string(" (127.0.0.1, a free port, a temporary lock directory)")));
    }
  }
  return words;
}

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return !path.empty() && stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         access(path.c_str(), X_OK) == 0;
}

std::string FindExecutable(const std::string& name, const std::string& path_env) {
  if (name.find('/') != std::string::npos) return name;
  for (absl::string_view dir : absl::StrSplit(path_env, ':')) {
    const std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", name);
    if (IsExecutableFile(candidate)) return candidate;
  }
  return "";
}

std::string DefaultServerBinary(const std::string& self_exe, const std::string& path_env) {
  if (!self_exe.empty()) {
    const std::filesystem::path beside =
        (std::filesystem::path(self_exe).parent_path() / ".." / "server" / "kiln-server")
            .lexically_normal();
    if (IsExecutableFile(beside.string())) return beside.string();
  }
  return FindExecutable("kiln-server", path_env);
}

absl::StatusOr<std::string> MakeTempDir(absl::string_view prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/", prefix, "-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return ErrnoStatus(errno, absl::StrCat("cannot create a directory ", pattern));
  }
  return pattern;
}

std::optional<std::string> MakeRunDir(absl::string_view command, std::ostream& err) {
  absl::StatusOr<std::string> dir = MakeTempDir(absl::StrCat("kiln-", command));
  if (!dir.ok()) {
    err << "kiln-bench " << command << ": " << dir.status().message() << "\n";
    return std::nullopt;
  }
  return *std::move(dir);
}

std::string FileTail(const std::string& path, size_t max_lines) {
  constexpr std::streamoff kMaxBytes = 64 << 10;
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  const std::streamoff start = std::max<std::streamoff>(0, std::streamoff(in.tellg()) - kMaxBytes);
  in.seekg(start);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  if (start > 0 && !lines.empty()) lines.erase(lines.begin());  // a partial line
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.size() > max_lines) lines.erase(lines.begin(), lines.end() - max_lines);
  return absl::StrJoin(lines, "\n");
}

// --- /proc -----------------------------------------------------------------------------------

absl::StatusOr<TreeMemory> TreePss(pid_t root) {
  const std::vector<pid_t> tree = ProcessTree(root);
  if (tree.empty()) return absl::NotFoundError(absl::StrCat("process ", root, " is gone"));
  TreeMemory memory;
  for (pid_t pid : tree) {
    const absl::StatusOr<ProportionalMemory> process = ReadProportionalMemory(pid);
    if (!process.ok()) {
      // A zombie (or a process that just exited) has an empty smaps_rollup: skip it, unless it
      // is the root, whose memory is the point.
      if (pid != root) continue;
      return absl::InternalError(process.status().message());
    }
    ++memory.processes;
    memory.pss_kb += process->pss_bytes / 1024;
  }
  return memory;
}

std::vector<pid_t> ProcessGroupMembers(pid_t pgid) {
  std::vector<pid_t> members;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return members;
  while (const dirent* entry = readdir(dir)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    const std::vector<std::string> fields = ProcStatFields(pid);
    // [0] state (field 3), [2] pgrp (field 5).
    if (fields.size() < 3 || fields[0] == "Z" || fields[0] == "X") continue;
    if (fields[2] == absl::StrCat(pgid)) members.push_back(pid);
  }
  closedir(dir);
  std::sort(members.begin(), members.end());
  return members;
}

// --- LaunchedServer --------------------------------------------------------------------------

LaunchedServer::LaunchedServer(pid_t pid, std::string log_path,
                               std::chrono::steady_clock::time_point started, std::string name)
    : pid_(pid), log_path_(std::move(log_path)), started_at_(started), name_(std::move(name)) {}

absl::StatusOr<std::unique_ptr<LaunchedServer>> LaunchedServer::Start(
    const std::vector<std::string>& argv, const std::string& log_path, std::string name) {
  const auto started = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(const pid_t pid, SpawnInProcessGroup(argv, /*env=*/nullptr, log_path));
  return std::unique_ptr<LaunchedServer>(
      new LaunchedServer(pid, log_path, started, std::move(name)));
}

LaunchedServer::~LaunchedServer() {
  if (reaped_) return;
  KillGroupAndWait(kGroupExitTimeout);
  // The master was SIGKILLed; reap it (bounded, in case it is stuck in the kernel).
  if (PollUntil([this] { return PeekExit().has_value(); }, kGroupExitTimeout, kPollInterval)) {
    waitpid(pid_, nullptr, 0);
  }
}

std::optional<ExitStatus> LaunchedServer::PeekExit() const {
  // Not reaped: the master stays a zombie, so its pid (the group id) stays reserved.
  return PeekChildExit(pid_);
}

bool LaunchedServer::KillGroupAndWait(std::chrono::milliseconds timeout) {
  // Safe while the master is not reaped: its pid, the group id, cannot have been reused.
  kill(-pid_, SIGKILL);
  return PollUntil([this] { return ProcessGroupMembers(pid_).empty(); }, timeout, kPollInterval);
}

absl::StatusOr<LaunchedServer::StopResult> LaunchedServer::Stop(std::chrono::milliseconds grace) {
  if (reaped_) return absl::FailedPreconditionError("the server was already stopped");
  StopResult result;
  kill(pid_, SIGTERM);
  if (!PollUntil([this] { return PeekExit().has_value(); }, grace, kPollInterval)) {
    result.killed = true;
    kill(-pid_, SIGKILL);
  }
  // The zygote and the workers follow the master (PR_SET_PDEATHSIG); give them a moment, then
  // make sure.
  bool empty = PollUntil([this] { return ProcessGroupMembers(pid_).empty(); }, kGroupExitTimeout,
                         kPollInterval);
  if (!empty) empty = KillGroupAndWait(kGroupExitTimeout);
  const std::optional<ExitStatus> exit = PeekExit();
  if (!empty || !exit) {
    return absl::InternalError(absl::StrCat(name_, "'s process group ", pid_,
                                            " survived SIGKILL: pids ",
                                            absl::StrJoin(ProcessGroupMembers(pid_), " ")));
  }
  result.exit = *exit;
  waitpid(pid_, nullptr, 0);
  reaped_ = true;
  return result;
}

std::string ValidateLaunchFlags(const std::string& repository, const std::string& model,
                                const std::string& server_flag, const std::string& json_path,
                                const std::string& log_dir, std::string* server, bool need_server) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (repository.empty()) return "--model_repository is required";
  if (!fs::is_directory(repository, error)) {
    return absl::StrCat("--model_repository: ", repository, " is not a directory");
  }
  if (model.empty()) return "--model is required";
  if (model.find('/') != std::string::npos || model == "." || model == "..") {
    return absl::StrCat("--model: '", model, "' is not a model name");
  }
  const fs::path config = fs::path(repository) / model / "config.pbtxt";
  if (!fs::is_regular_file(config, error)) {
    return absl::StrCat("--model: no model '", model, "' in ", repository, " (", config.string(),
                        " is missing)");
  }
  const char* path_env = std::getenv("PATH");
  if (!need_server) {
    // Another server is started instead: nothing to look for.
  } else if (server_flag.empty()) {
    std::error_code link_error;
    const fs::path self = fs::read_symlink("/proc/self/exe", link_error);
    *server =
        DefaultServerBinary(link_error ? "" : self.string(), path_env != nullptr ? path_env : "");
    if (server->empty()) {
      return "no kiln-server beside kiln-bench (../server/kiln-server) nor in PATH; pass --server";
    }
  } else {
    *server = FindExecutable(server_flag, path_env != nullptr ? path_env : "");
    if (!IsExecutableFile(*server)) {
      return absl::StrCat("--server: '", server_flag, "' is not an executable file",
                          server_flag.find('/') == std::string::npos ? " (nor found in PATH)" : "");
    }
  }
  if (!json_path.empty()) {
    const fs::path json(json_path);
    const fs::path parent = json.has_parent_path() ? json.parent_path() : fs::path(".");
    if (!fs::is_directory(parent, error)) {
      return absl::StrCat("--json: directory ", parent.string(), " does not exist");
    }
    if (fs::is_directory(json, error)) {
      return absl::StrCat("--json: ", json_path, " is a directory");
    }
  }
  if (!log_dir.empty()) {
    fs::create_directories(log_dir, error);
    if (!fs::is_directory(log_dir, error)) {
      return absl::StrCat("--log_dir: cannot create the directory ", log_dir);
    }
  }
  return "";
}

// --- waiting for SERVING -------------------------------------------------------------------

std::shared_ptr<grpc::Channel> ServerChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kDefaultMaxMessageBytes);
  args.SetMaxSendMessageSize(kDefaultMaxMessageBytes);
  args.SetInt("grpc.initial_reconnect_backoff_ms", 20);
  args.SetInt("grpc.min_reconnect_backoff_ms", 20);
  args.SetInt("grpc.max_reconnect_backoff_ms", 100);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

std::string ExitNote(const LaunchedServer& server) {
  const std::optional<ExitStatus> exit = server.PeekExit();
  return exit ? absl::StrCat(" (", server.name(), " exited: ", exit->Describe(), ")") : "";
}

absl::StatusOr<std::chrono::steady_clock::time_point> WaitServing(
    grpc::health::v1::Health::Stub& stub, const LaunchedServer& server,
    std::chrono::steady_clock::time_point deadline, const std::string& timeout_flag) {
  using Clock = std::chrono::steady_clock;
  using grpc::health::v1::HealthCheckRequest;
  using grpc::health::v1::HealthCheckResponse;
  grpc::ClientContext context;
  context.set_wait_for_ready(true);
  context.set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - Clock::now()));
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool server_exited = false;
  std::thread watcher([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (!done) {
      if (server.PeekExit()) {
        server_exited = true;
        context.TryCancel();
        return;
      }
      cv.wait_for(lock, std::chrono::milliseconds(10));
    }
  });
  HealthCheckRequest request;
  request.set_service("");
  std::unique_ptr<grpc::ClientReaderInterface<HealthCheckResponse>> reader =
      stub.Watch(&context, request);
  HealthCheckResponse response;
  std::optional<Clock::time_point> serving;
  std::string last = "none";
  while (reader->Read(&response)) {
    if (response.status() == HealthCheckResponse::SERVING) {
      serving = Clock::now();
      break;
    }
    last = HealthCheckResponse::ServingStatus_Name(response.status());
  }
  context.TryCancel();  // done with the stream either way
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv.notify_all();
  watcher.join();
  const grpc::Status status = reader->Finish();
  if (serving) return *serving;
  if (server_exited || server.PeekExit()) {
    return absl::UnavailableError(
        absl::StrCat(server.name(), " exited before SERVING: ", server.PeekExit()->Describe()));
  }
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::DeadlineExceededError(absl::StrCat(
        server.name(), " not SERVING within ", timeout_flag, " (last health status: ", last, ")"));
  }
  return absl::UnavailableError(
      absl::StrCat("Health.Watch ended before SERVING: ", FormatGrpcStatus(status),
                   " (last health status: ", last, ")"));
}

}  // namespace kiln::bench
