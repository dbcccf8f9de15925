// A harness for integration tests that run the real kiln-server binary: start it in a process
// group of its own, read its log, probe its health, signal it, inspect its process tree (master,
// zygote, workers), and make sure nothing of it outlives the test. Plus a small Open Inference
// Protocol client and a helper that builds throw-away model repositories from the demo models.
// Spawning, the /proc tree walk, free ports and PollUntil are common/process.h's.
//
// Everything here is for one test thread, except where a comment says otherwise.
#ifndef KILN_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define KILN_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "common/process.h"
#include "common/tensor.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "proto/grpc_service.grpc.pb.h"
#include "tests/process_identity.h"
#include "tests/test_paths.h"

namespace kiln::testing {

// Polls `done` every `interval` (default 20 ms) until it returns true or `timeout` passes; the
// synchronisation every test uses instead of fixed sleeps.
using ::kiln::PollUntil;

struct ServerConfig {
  std::string binary;  // the kiln-server executable
  std::string model_repository;
  int port = 0;                         // 0: kiln::FreeLoopbackPort()
  int workers = 1;                      // --workers; 0 leaves the flag out
  std::string lock_dir;                 // "": a directory of the ServerProcess's own
  std::vector<std::string> extra_args;  // more flags, e.g. "--drain_timeout_s=5"
  // "NAME=value" added to (or replacing in) the environment; "NAME" alone removes it.
  std::vector<std::string> env;
  // A command the server runs under, e.g. {"/usr/bin/taskset", "-c", "0"}; it must exec the
  // server, keeping its pid (taskset, setpriv, prlimit, InCgroup's sh do).
  std::vector<std::string> launcher;
};

// Ownership: owns the server's process group and the directory holding its log (and, unless
// told otherwise, its lock). The destructor SIGKILLs the whole group and reaps the master, so
// nothing survives a test, even one that failed half-way. Not thread-safe, except the const
// methods (log(), pid(), port(), TreePids(), ...), which any thread may call.
class ServerProcess {
 public:
  // Starts `[launcher...] binary --model_repository=... --host=127.0.0.1 --port=N --lock_dir=D
  // --metrics_port=0 [--workers=K] extra_args...` with SpawnInProcessGroup (stdout and stderr going
  // to a log file). Throws std::runtime_error when it cannot (no free port, no log file, fork
  // failed).
  explicit ServerProcess(ServerConfig config);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  const std::string& lock_dir() const { return lock_dir_; }
  std::string address() const;  // "127.0.0.1:<port>"
  // The log so far (stdout and stderr, interleaved).
  std::string log() const;

  // Polls grpc.health.v1 Check("") with a 200 ms deadline per try, each on a fresh channel that
  // is closed afterwards, until it answers SERVING (true), or the master exits or `timeout`
  // passes (false).
  bool WaitServing(std::chrono::milliseconds timeout);
  // Sends `sig` to the master only.
  void Signal(int sig) const;
  // SIGKILLs the whole process group at once (master, zygote, workers) without reaping: for
  // tests that must unblock their client threads quickly after a failure.
  void KillAll() const;
  // Waits for the master to exit; its exit code (128 + n for a signal n), or std::nullopt on
  // timeout. Once it exited, later calls return the same code at once.
  std::optional<int> WaitExit(std::chrono::milliseconds timeout);
  // True until the master was reaped by WaitExit (or is a zombie waiting for it).
  bool IsRunning();

  // The master and every descendant (zygote, templates, workers), master first; empty once it
  // is gone.
  std::vector<ProcessId> TreePids() const;
  // The zygote(s): the master's children, less the workers it adopted when their zygote died.
  std::vector<pid_t> ZygotePids() const;
  // The warm templates: the master's descendants named kiln-template.
  std::vector<pid_t> TemplatePids() const;
  // The workers: the master's descendants named kiln-worker (a zygote's or a template's
  // children, or the master's own once their zygote died).
  std::vector<pid_t> WorkerPids() const;

 private:
  ServerConfig config_;
  TempDir dir_;
  std::string log_path_;
  std::string lock_dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

// Busy loops beside the server under test, as a noisy neighbour: `count` child processes that
// spin at normal priority (nice 0), each pinned to CPU `cpu` when it is >= 0. They die with the
// object (SIGKILL by pid, reaped) and with this process (PR_SET_PDEATHSIG). Throws
// std::runtime_error when fork fails.
class BusyLoops {
 public:
  explicit BusyLoops(int count, int cpu = -1);
  ~BusyLoops();
  BusyLoops(const BusyLoops&) = delete;
  BusyLoops& operator=(const BusyLoops&) = delete;
  const std::vector<pid_t>& pids() const { return pids_; }

 private:
  std::vector<pid_t> pids_;
};

// The first CPU this process may run on (its affinity mask), for pinning.
int FirstAllowedCpu();

// The scheduling policy of every thread of `pid` (field 41 of /proc/<pid>/task/<tid>/stat:
// 0 SCHED_OTHER, 5 SCHED_IDLE), by thread id; empty when it is gone.
std::map<pid_t, int> ThreadPolicies(pid_t pid);

// --- Open Inference Protocol client ------------------------------------------------------------

// A channel to 127.0.0.1:port that accepts large responses and retries connecting quickly.
std::shared_ptr<grpc::Channel> LoopbackChannel(int port);

// A LoopbackChannel to a port that is serving, connected (READY) before it is returned
// (bench::Connected: Unavailable with gRPC's reason when it is not within `timeout`). For load
// from many clients at once: a call on a channel whose first connection attempt failed ends
// UNAVAILABLE at once, and so do the calls after it until the reconnect (100 ms later), and
// Debian's gRPC 1.51 client sometimes fails a loopback connect on its own side ("failed to
// connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:<port>: No such file or
// directory", which matches gRPC reading connect's errno after other calls, fixed upstream in
// grpc/grpc#35064). Connecting first retries through that, as a real client would.
absl::StatusOr<std::shared_ptr<grpc::Channel>> ConnectedChannel(
    int port, std::chrono::milliseconds timeout = std::chrono::seconds(10));

// The OIP datatype ("FP32", "INT64", ...) of a dtype; "" when OIP has none.
std::string OipDatatype(DType dtype);

// A ModelInferRequest for `model` carrying `inputs` in raw_input_contents.
inference::ModelInferRequest MakeInferRequest(const std::string& model,
                                              const std::vector<TensorView>& inputs);

// ModelInfer with a deadline of `timeout` from now.
grpc::Status ModelInfer(inference::GRPCInferenceService::Stub& stub,
                        const inference::ModelInferRequest& request,
                        inference::ModelInferResponse* response, std::chrono::milliseconds timeout);

// grpc.health.v1 Check for `service` with a deadline; the status, and the serving status in
// `serving` when OK.
grpc::Status HealthCheck(grpc::health::v1::Health::Stub& stub, const std::string& service,
                         grpc::health::v1::HealthCheckResponse::ServingStatus* serving,
                         std::chrono::milliseconds timeout);

// --- model repositories --------------------------------------------------------------------

// Writes a repository under `dir` in Triton's layout: for each model name,
// <dir>/<name>/config.pbtxt with the given text, <dir>/<name>/kiln.pbtxt (kiln's settings) as
// TestModel::settings says, and <dir>/<name>/<version>/ holding symlinks to the demo model
// `source`'s version 1 files (model.pt, model.safetensors, reference.safetensors, tokenizer.model
// when present). `models` maps a model name to {demo model to take the files from, config text,
// versions, settings}. Returns dir.path().
struct TestModel {
  std::string source;               // a demo model under ModelsDir(): "mlp", "resnet50", ...
  std::string config;               // config.pbtxt text (Triton's ModelConfig)
  std::vector<int> versions = {1};  // version directories, each linking the demo's files
  // kiln.pbtxt text (kiln.ModelSettings). std::nullopt: a copy of the demo model `source`'s
  // kiln.pbtxt, when it has one; "": no kiln.pbtxt.
  std::optional<std::string> settings = std::nullopt;
};
std::string MakeRepository(const TempDir& dir, const std::map<std::string, TestModel>& models);
// <repository>/<model>/<version>: links to the demo model `source`'s version 1 files.
void LinkVersion(const std::string& repository, const std::string& model, const std::string& source,
                 int version);
// Shorthand: every model is the demo model of the same name with the given config.pbtxt text,
// and the demo's kiln.pbtxt when it has one.
std::string MakeRepository(const TempDir& dir, const std::map<std::string, std::string>& configs);
// The demo model `model`'s kiln.pbtxt text; "" when it has none.
std::string DemoSettings(const std::string& model);

}  // namespace kiln::testing

#endif  // KILN_TESTS_INTEGRATION_SERVER_PROCESS_H_
