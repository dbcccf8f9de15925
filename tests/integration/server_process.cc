#include "tests/integration/server_process.h"

#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "bench/oip_client.h"

extern char** environ;

namespace kiln::testing {
namespace {

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Copies the environment, with each of `extra` ("NAME=value") replacing its name's entry, and
// without the names `extra` lists alone ("NAME").
std::vector<std::string> EnvironmentWith(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  auto name_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    bool replaced = false;
    for (const std::string& x : extra) replaced = replaced || name_of(x) == name_of(entry);
    if (!replaced) env.push_back(entry);
  }
  for (const std::string& x : extra) {
    if (x.find('=') != std::string::npos) env.push_back(x);  // "NAME" alone only removes
  }
  return env;
}

// The master's exit as an exit code (128 + n for a signal n), without reaping it: a zombie
// master keeps its pid and its process group id reserved, so the destructor can still kill the
// group safely.
std::optional<int> PeekExitCode(pid_t pid) {
  const std::optional<ExitStatus> exit = PeekChildExit(pid);
  if (!exit.has_value()) return std::nullopt;
  return exit->signaled ? 128 + exit->code : exit->code;
}

}  // namespace

// --- ServerProcess -------------------------------------------------------------------------

ServerProcess::ServerProcess(ServerConfig config) : config_(std::move(config)) {
  if (config_.port != 0) {
    port_ = config_.port;
  } else {
    const absl::StatusOr<int> port = FreeLoopbackPort();
    if (!port.ok()) throw std::runtime_error(port.status().ToString());
    port_ = *port;
  }
  lock_dir_ = config_.lock_dir.empty() ? dir_.path() : config_.lock_dir;
  log_path_ = dir_.path() + "/server.log";

  std::vector<std::string> args = config_.launcher;
  const std::vector<std::string> server = {
      config_.binary,
      "--model_repository=" + config_.model_repository,
      "--host=127.0.0.1",
      "--port=" + std::to_string(port_),
      "--lock_dir=" + lock_dir_,
      // No metrics endpoint unless a test asks for one (extra_args come later and win): tests
      // run side by side, and the default port is one port.
      "--metrics_port=0",
  };
  args.insert(args.end(), server.begin(), server.end());
  if (config_.workers > 0) args.push_back("--workers=" + std::to_string(config_.workers));
  args.insert(args.end(), config_.extra_args.begin(), config_.extra_args.end());
  const std::vector<std::string> env = EnvironmentWith(config_.env);
  const absl::StatusOr<pid_t> pid = SpawnInProcessGroup(args, &env, log_path_);
  if (!pid.ok()) throw std::runtime_error(pid.status().ToString());
  pid_ = *pid;
}

ServerProcess::~ServerProcess() {
  if (pid_ <= 0) return;
  // The master is not reaped yet (WaitExit only peeks), so the group id cannot have been reused.
  KillAll();
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  // A UBSan report of the server's processes (scripts/sanitize.sh) only reaches this log, which
  // goes away with the test's directory: copy it to the test's output, where the script looks.
  const std::string log = this->log();
  if (log.find(": runtime error: ") != std::string::npos) {
    std::cerr << "server log with a sanitizer report (" << log_path_ << "):\n" << log << std::endl;
  }
}

std::string ServerProcess::address() const { return "127.0.0.1:" + std::to_string(port_); }

std::string ServerProcess::log() const { return ReadWholeFile(log_path_); }

bool ServerProcess::WaitServing(std::chrono::milliseconds timeout) {
  bool serving = false;
  PollUntil(
      [&] {
        if (!IsRunning()) return true;
        // A fresh channel per try: no reconnect backoff carried over from refused attempts, and
        // no idle connection left open afterwards (an idle client connection changes how the
        // server shuts down, which some tests measure).
        grpc::health::v1::Health::Stub health(LoopbackChannel(port_));
        grpc::health::v1::HealthCheckResponse::ServingStatus status;
        serving = HealthCheck(health, "", &status, std::chrono::milliseconds(200)).ok() &&
                  status == grpc::health::v1::HealthCheckResponse::SERVING;
        return serving;
      },
      timeout, std::chrono::milliseconds(50));
  return serving;
}

void ServerProcess::Signal(int sig) const {
  if (!exit_code_.has_value()) kill(pid_, sig);
}

void ServerProcess::KillAll() const {
  // Safe even after the master exited: WaitExit never reaps it, so its pid (the group id) is
  // still reserved.
  kill(-pid_, SIGKILL);
}

std::optional<int> ServerProcess::WaitExit(std::chrono::milliseconds timeout) {
  PollUntil([this] { return !IsRunning(); }, timeout, std::chrono::milliseconds(10));
  return exit_code_;
}

bool ServerProcess::IsRunning() {
  if (!exit_code_.has_value()) exit_code_ = PeekExitCode(pid_);
  return !exit_code_.has_value();
}

std::vector<ProcessId> ServerProcess::TreePids() const {
  std::vector<ProcessId> tree;
  for (pid_t pid : ProcessTree(pid_)) {
    const std::optional<ProcessId> id = Identify(pid);
    if (id.has_value()) tree.push_back(*id);
  }
  return tree;
}

namespace {

// /proc/<pid>/comm: "kiln-zygote", "kiln-template", "kiln-worker" (kiln names each process).
std::string NameOf(pid_t pid) {
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string line;
  std::getline(comm, line);
  return line;
}

}  // namespace

std::vector<pid_t> ServerProcess::ZygotePids() const {
  // The master's live children, less the workers (and dying templates) it adopted as subreaper
  // when their zygote died. A zygote is a child before it names itself, so it is not found by
  // its name.
  std::vector<pid_t> zygotes;
  for (pid_t child : ChildrenOf(pid_)) {
    const std::string name = NameOf(child);
    if (name != "kiln-worker" && name != "kiln-template" && Identify(child).has_value()) {
      zygotes.push_back(child);
    }
  }
  return zygotes;
}

namespace {

// The live processes below `root` (not `root` itself) whose name is `name`.
std::vector<pid_t> NamedUnder(pid_t root, const std::string& name) {
  std::vector<pid_t> found;
  for (pid_t pid : ProcessTree(root)) {
    if (pid != root && NameOf(pid) == name && Identify(pid)) found.push_back(pid);
  }
  return found;
}

}  // namespace

std::vector<pid_t> ServerProcess::TemplatePids() const { return NamedUnder(pid_, "kiln-template"); }

std::vector<pid_t> ServerProcess::WorkerPids() const { return NamedUnder(pid_, "kiln-worker"); }

// --- OIP client ----------------------------------------------------------------------------

BusyLoops::BusyLoops(int count, int cpu) {
  for (int i = 0; i < count; ++i) {
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("BusyLoops: fork failed");
    if (pid == 0) {
      // Only async-signal-safe calls here: the test process may have gRPC threads.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      if (cpu >= 0) {
        cpu_set_t mask;
        CPU_ZERO(&mask);
        CPU_SET(cpu, &mask);
        sched_setaffinity(0, sizeof(mask), &mask);
      }
      for (volatile uint64_t spins = 0;; spins = spins + 1) {
      }
    }
    pids_.push_back(pid);
  }
}

BusyLoops::~BusyLoops() {
  for (pid_t pid : pids_) kill(pid, SIGKILL);
  for (pid_t pid : pids_) waitpid(pid, nullptr, 0);
}

int FirstAllowedCpu() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof(mask), &mask) != 0) return 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &mask)) return cpu;
  }
  return 0;
}

std::map<pid_t, int> ThreadPolicies(pid_t pid) {
  std::map<pid_t, int> policies;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(tasks, error)) {
    const std::string name = entry.path().filename();
    const std::string stat = ReadWholeFile(entry.path().string() + "/stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 2));
    std::string field;
    for (int n = 3; n <= 41 && fields >> field; ++n) {
      if (n == 41) policies[std::stoi(name)] = std::stoi(field);
    }
  }
  return policies;
}

std::shared_ptr<grpc::Channel> LoopbackChannel(int port) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  // Probing a port that is not open yet must not back off for seconds between attempts.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 300);
  // A subchannel of our own: no connection (or backoff state) shared with other channels.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials(), args);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> ConnectedChannel(int port,
                                                                std::chrono::milliseconds timeout) {
  return bench::Connected(LoopbackChannel(port), "127.0.0.1:" + std::to_string(port), timeout);
}

std::string OipDatatype(DType dtype) {
  switch (dtype) {
    case DType::kBool:
      return "BOOL";
    case DType::kUInt8:
      return "UINT8";
    case DType::kInt8:
      return "INT8";
    case DType::kInt16:
      return "INT16";
    case DType::kInt32:
      return "INT32";
    case DType::kInt64:
      return "INT64";
    case DType::kFloat16:
      return "FP16";
    case DType::kBFloat16:
      return "BF16";
    case DType::kFloat32:
      return "FP32";
    case DType::kFloat64:
      return "FP64";
    default:
      return "";
  }
}

inference::ModelInferRequest MakeInferRequest(const std::string& model,
                                              const std::vector<TensorView>& inputs) {
  inference::ModelInferRequest request;
  request.set_model_name(model);
  for (const TensorView& view : inputs) {
    auto* input = request.add_inputs();
    input->set_name(view.name);
    input->set_datatype(OipDatatype(view.dtype));
    for (int64_t dim : view.shape) input->add_shape(dim);
    request.add_raw_input_contents(static_cast<const char*>(view.data), view.nbytes);
  }
  return request;
}

grpc::Status ModelInfer(inference::GRPCInferenceService::Stub& stub,
                        const inference::ModelInferRequest& request,
                        inference::ModelInferResponse* response,
                        std::chrono::milliseconds timeout) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  return stub.ModelInfer(&context, request, response);
}

grpc::Status HealthCheck(grpc::health::v1::Health::Stub& stub, const std::string& service,
                         grpc::health::v1::HealthCheckResponse::ServingStatus* serving,
                         std::chrono::milliseconds timeout) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub.Check(&context, request, &response);
  if (status.ok() && serving != nullptr) *serving = response.status();
  return status;
}

// --- model repositories --------------------------------------------------------------------

void LinkVersion(const std::string& repository, const std::string& model, const std::string& source,
                 int version) {
  namespace fs = std::filesystem;
  const fs::path from = fs::path(ModelsDir()) / source / "1";
  const fs::path to = fs::path(repository) / model / std::to_string(version);
  fs::create_directories(to);
  for (const char* file :
       {"model.pt", "model.safetensors", "reference.safetensors", "tokenizer.model"}) {
    if (fs::exists(from / file)) fs::create_symlink(from / file, to / file);
  }
}

std::string DemoSettings(const std::string& model) {
  return ReadWholeFile(ModelsDir() + "/" + model + "/kiln.pbtxt");  // "" when there is none
}

std::string MakeRepository(const TempDir& dir, const std::map<std::string, TestModel>& models) {
  for (const auto& [name, model] : models) {
    dir.WriteFile(name + "/config.pbtxt", model.config);
    const std::string settings = model.settings.value_or(DemoSettings(model.source));
    if (!settings.empty()) dir.WriteFile(name + "/kiln.pbtxt", settings);
    for (int version : model.versions) LinkVersion(dir.path(), name, model.source, version);
  }
  return dir.path();
}

std::string MakeRepository(const TempDir& dir, const std::map<std::string, std::string>& configs) {
  std::map<std::string, TestModel> models;
  for (const auto& [name, config] : configs) models[name] = TestModel{name, config};
  return MakeRepository(dir, models);
}

}  // namespace kiln::testing
