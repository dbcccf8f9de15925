#include "server/master.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/clock.h"
#include "common/cpu_probe.h"
#include "common/fork_safety.h"
#include "common/idle_priority.h"
#include "common/memory_probe.h"
#include "common/model_config_loader.h"
#include "common/openmp_wait.h"
#include "common/thread_plan.h"
#include "common/traffic_profile.h"
#include "glog/logging.h"
#include "server/inference_service.h"
#include "server/kiln_service.h"
#include "server/port_lock.h"
#include "server/readiness_check.h"
#include "server/systemd_notify.h"
#include "server/traffic_replay.h"
#include "server/worker_pool.h"
#include "server/zygote.h"
#include "worker/tokenizer.h"
#include "worker/torch_model.h"

namespace kiln {
namespace {

// Signals the master handles in its own loop (sigtimedwait): no handler runs at all, and every
// thread started later inherits the mask, so only the loop ever sees them.
sigset_t ControlSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGTTIN, SIGTTOU}) sigaddset(&set, sig);
  return set;
}

// Waits up to `timeout_ms` for a control signal; 0 when none came.
int NextSignal(int timeout_ms) {
  const sigset_t set = ControlSignals();
  timespec timeout{timeout_ms / 1000, (timeout_ms % 1000) * 1'000'000L};
  const int sig = sigtimedwait(&set, nullptr, &timeout);
  return sig > 0 ? sig : 0;
}

// Times the phases of the startup timeline (DESIGN.md, "Startup sequence").
class Timeline {
 public:
  // Logs "startup: <phase> in <ms> ms" for the time since the previous call, and keeps it.
  void Phase(const std::string& what) {
    const auto now = std::chrono::steady_clock::now();
    LOG(INFO) << absl::StrFormat("startup: %s in %.1f ms (%.1f ms since start)", what,
                                 Ms(last_, now), Ms(start_, now));
    StartupPhase& phase = phases_.emplace_back();
    phase.set_name(what);
    phase.set_duration_ms(Ms(last_, now));
    phase.set_since_start_ms(Ms(start_, now));
    last_ = now;
  }
  const std::vector<StartupPhase>& phases() const { return phases_; }

 private:
  static double Ms(std::chrono::steady_clock::time_point a,
                   std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  }
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_ = start_;
  std::vector<StartupPhase> phases_;
};

// Forks the zygote from this (main, only) thread, so that its PR_SET_PDEATHSIG fires when the
// master exits. Returns its pid in the master; never returns in the zygote.
// `master_end` is closed in the zygote, so that only the master holds it and the zygote (and
// every worker it forks) sees EOF when the master closes it.
absl::StatusOr<pid_t> ForkZygote(const std::map<std::string, ZygoteModel>& models,
                                 FrameChannel& master_end, FrameChannel zygote_end) {
  absl::StatusOr<pid_t> pid = ForkChecked("the zygote");
  if (!pid.ok() || *pid != 0) return pid;
  master_end.Close();
  const pid_t master = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != master) _exit(1);  // the master died before prctl took effect
  prctl(PR_SET_NAME, "kiln-zygote");
  RunZygote(models, std::move(zygote_end));
}

// Reaps the zygote (its workers die with it through PR_SET_PDEATHSIG). It leaves by itself once
// the pool closed its channel (it ignores TERM); after 5 s, or at once with `now`, it is killed.
void ReapZygote(pid_t zygote, bool now) {
  for (int i = 0; i < 50 && !now; ++i) {
    if (waitpid(zygote, nullptr, WNOHANG) == zygote) return;
    usleep(100'000);
  }
  kill(zygote, SIGKILL);
  waitpid(zygote, nullptr, 0);
}

std::string ReadySummary(const WorkerPool& pool) {
  int ready = 0, total = 0;
  for (const WorkerInfo& worker : pool.Workers()) {
    ++total;
    ready += worker.state == WorkerState::kReady || worker.state == WorkerState::kBusy;
  }
  return absl::StrCat(ready, "/", total, " workers warm");
}

// Waits for every model's quorum. Returns std::nullopt when ready, else the exit code to leave
// with (1 on failure, 0 for TERM and 130 for INT while warming).
std::optional<int> WaitForQuorum(const WorkerPool& pool, const MasterOptions& options) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(options.startup_timeout_s);
  auto next_extend = std::chrono::steady_clock::now();
  while (!pool.AllModelsReady()) {
    if (absl::Status fatal = pool.fatal_error(); !fatal.ok()) {
      LOG(ERROR) << "startup failed: " << fatal.message();
      return 1;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      LOG(ERROR) << "startup failed: workers not warm after " << options.startup_timeout_s
                 << " s (--startup_timeout_s); " << ReadySummary(pool);
      return 1;
    }
    if (std::chrono::steady_clock::now() >= next_extend) {
      // Warming can outlast systemd's TimeoutStartSec; tell it we are making progress.
      NotifySystemd(
          absl::StrCat("EXTEND_TIMEOUT_USEC=30000000\nSTATUS=warming: ", ReadySummary(pool)));
      next_extend += std::chrono::seconds(10);
    }
    if (const int sig = NextSignal(50); sig == SIGTERM || sig == SIGINT) {
      LOG(INFO) << "startup: " << strsignal(sig) << " while warming; stopping";
      return sig == SIGINT ? 130 : 0;
    }
  }
  return std::nullopt;
}

// What the master loads before the fork and every worker inherits.
struct LoadedModels {
  std::vector<std::unique_ptr<TorchModel>> models;  // empty with --share_weights=off
  std::vector<std::unique_ptr<Tokenizer>> tokenizers;
  std::map<std::string, ZygoteModel> by_name;
};

// Loads every model's tokenizer, and (with `share_weights`) the model itself: mapped weights,
// TorchScript, rebinding.
absl::StatusOr<LoadedModels> LoadModels(const std::vector<ModelSpec>& specs, bool share_weights,
                                        Timeline& timeline) {
  LoadedModels loaded;
  for (const ModelSpec& spec : specs) {
    ZygoteModel& entry = loaded.by_name[spec.config.name()];
    entry.spec = &spec;
    if (!spec.tokenizer_path.empty()) {
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(spec.tokenizer_path);
      if (!tokenizer.ok()) {
        return absl::Status(tokenizer.status().code(),
                            absl::StrCat("load ", spec.config.name(),
                                         "'s tokenizer: ", tokenizer.status().message()));
      }
      entry.tokenizer = tokenizer->get();
      loaded.tokenizers.push_back(*std::move(tokenizer));
      timeline.Phase(absl::StrFormat("loaded %s's tokenizer (%d pieces, %.1f ms)",
                                     spec.config.name(), entry.tokenizer->vocab_size(),
                                     MillisecondsSince(start)));
    }
    if (!share_weights) continue;
    absl::StatusOr<std::unique_ptr<TorchModel>> model = TorchModel::Load(spec);
    if (!model.ok()) {
      return absl::Status(model.status().code(), absl::StrCat("load ", spec.config.name(), ": ",
                                                              model.status().message()));
    }
    const TorchModelLoadStats& stats = (*model)->stats();
    timeline.Phase(absl::StrFormat(
        "loaded %s v%d (map %.1f ms, %.1f MB; torchscript %.1f ms; rebind %.1f ms, %d tensors "
        "shared, %d copied)",
        spec.config.name(), spec.version, stats.map_ms, stats.mapped_bytes / 1e6, stats.load_ms,
        stats.rebind_ms, stats.tensors_rebound, stats.tensors_copied));
    entry.loaded = model->get();
    loaded.models.push_back(*std::move(model));
  }
  return loaded;
}

// What every gRPC server of the master shares: the default health service, reflection, and the
// message size limits.
void ConfigureGrpc(const MasterOptions& options, grpc::ServerBuilder& builder) {
  NoteGrpcObjectCreated();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  builder.SetMaxReceiveMessageSize(options.max_message_mb << 20);
  builder.SetMaxSendMessageSize(options.max_message_mb << 20);
}

std::unique_ptr<grpc::Server> StartGrpc(const MasterOptions& options, InferenceService& service,
                                        KilnServiceImpl& kiln_service, int& port) {
  grpc::ServerBuilder builder;
  ConfigureGrpc(options, builder);
  // gRPC sets SO_REUSEPORT by default, which would let a second server share the port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(absl::StrCat(options.host, ":", options.port),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  builder.RegisterService(&kiln_service);
  return builder.BuildAndStart();
}

// The readiness check (server/readiness_check.h) through a private gRPC server that listens on
// no port: only an in-process channel reaches it. Retried up to kReadinessAttempts times; returns
// 0 when every model passed, else the exit code (1).
int CheckReadiness(const MasterOptions& options, WorkerPool& pool,
                   const std::vector<ModelSpec>& specs) {
  constexpr int kReadinessAttempts = 3;
  for (int attempt = 1; attempt <= kReadinessAttempts; ++attempt) {
    InferenceService service(specs, pool);
    grpc::ServerBuilder builder;
    ConfigureGrpc(options, builder);
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (server == nullptr) {
      LOG(ERROR) << "startup failed: cannot start the readiness check's in-process server";
      return 1;
    }
    grpc::ChannelArguments arguments;
    arguments.SetMaxReceiveMessageSize(options.max_message_mb << 20);
    arguments.SetMaxSendMessageSize(options.max_message_mb << 20);
    std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
        inference::GRPCInferenceService::NewStub(server->InProcessChannel(arguments));
    absl::StatusOr<std::vector<ReadinessResult>> results =
        RunReadinessCheck(*stub, specs, pool.Workers(), options.warmup);
    server->Shutdown();
    if (!results.ok()) {
      LOG(ERROR) << "startup failed: readiness check: " << results.status().message();
      return 1;
    }
    bool passed = true;
    for (const ReadinessResult& result : *results) {
      LOG_IF(INFO, result.passed()) << "readiness check: " << result.Describe();
      LOG_IF(WARNING, !result.passed()) << "readiness check (attempt " << attempt << " of "
                                        << kReadinessAttempts << "): " << result.Describe();
      passed = passed && result.passed();
    }
    if (passed) return 0;
  }
  LOG(ERROR) << "startup failed: the readiness check did not pass in " << kReadinessAttempts
             << " attempts (see readiness.max_p95_factor and check_allowance_ms)";
  return 1;
}

// How often the recorded traffic is written to --state_dir while serving (and once at the end).
constexpr std::chrono::seconds kTrafficSaveInterval(30);

void SaveTraffic(TrafficRecorder& recorder, const std::string& state_dir) {
  if (absl::Status saved = recorder.Save(state_dir); !saved.ok()) {
    LOG(WARNING) << "traffic profile not saved: " << saved.message();
  }
}

// Health of "" and of each model, from the pool's quorums.
void UpdateHealth(grpc::HealthCheckServiceInterface& health, const WorkerPool& pool,
                  const std::vector<ModelSpec>& specs, std::map<std::string, bool>& last) {
  bool all = true;
  for (const ModelSpec& spec : specs) {
    const std::string& name = spec.config.name();
    const bool ready = pool.ModelReady(name);
    all = all && ready;
    if (last.count(name) == 0 || last[name] != ready) {
      health.SetServingStatus(name, ready);
      if (last.count(name) != 0) {
        LOG(WARNING) << "model " << name << ": "
                     << (ready ? "SERVING again" : "NOT_SERVING (below quorum)");
      }
      last[name] = ready;
    }
  }
  if (last.count("") == 0 || last[""] != all) {
    health.SetServingStatus(all);
    last[""] = all;
  }
}

// The CPUs the server sizes its threads to, how it sizes them, how OpenMP threads wait and the
// priority workers warm at: decided once, before the zygote, and logged beside the memory limit.
CpuSetup PlanCpu(const MasterOptions& options, const std::vector<ModelSpec>& specs,
                 const LoadedModels& models, int64_t memory_limit_bytes) {
  CpuSetup setup;
  const CpuLimit limit = ProcessCpuLimit();
  setup.limit = options.cpus > 0 ? absl::StrCat(options.cpus, " (--cpus; the process has ",
                                                limit.Describe(), ")")
                                 : limit.Describe();
  LOG(INFO) << "cpu: " << setup.limit << " for the whole server";

  // A worker starts as a copy of the master and touches every weight: reckon it at the master's
  // resident memory plus the mapped weights (only to cap automatic worker counts).
  ThreadPlanInputs inputs;
  inputs.cpus = options.cpus > 0 ? options.cpus : limit.cpus;
  inputs.workers_per_model = options.workers_per_model;
  inputs.memory_limit_bytes = memory_limit_bytes;
  if (absl::StatusOr<ResidentMemory> resident = ReadResidentMemory(); resident.ok()) {
    inputs.worker_footprint_bytes = resident->resident_bytes;
    for (const auto& model : models.models) {
      inputs.worker_footprint_bytes += static_cast<int64_t>(model->stats().mapped_bytes);
    }
  }
  setup.plan = PlanThreads(specs, inputs);
  LOG(INFO) << "threads: " << setup.plan.Describe();
  for (const std::string& warning : setup.plan.warnings) LOG(WARNING) << "threads: " << warning;
  setup.openmp_wait = DescribeOpenMpWait();
  LOG(INFO) << "threads: OpenMP threads wait: " << setup.openmp_wait;

  if (!options.warmup) {
    setup.warm_priority = "normal (--warmup=off: nothing to warm)";
  } else if (!options.warm_at_idle_priority) {
    setup.warm_priority = "normal (--warmup_priority=normal)";
  } else if (const IdleReturn back = CheckReturnFromIdle(); back.allowed) {
    setup.warm_at_idle_priority = true;
    setup.warm_priority = absl::StrCat(
        "idle (SCHED_IDLE: only CPU left over), back to normal as the port opens (", back.how, ")");
  } else {
    setup.warm_priority = absl::StrCat("normal: ", back.how);
  }
  LOG(INFO) << "cpu: workers warm at " << setup.warm_priority;
  return setup;
}

}  // namespace

int RunMaster(const MasterOptions& options) {
  Timeline timeline;
  const sigset_t control = ControlSignals();
  sigprocmask(SIG_BLOCK, &control, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // 1. Flags (parsed by main), the port lock, the model repository.
  std::unique_ptr<PortLock> lock;
  if (options.port != 0) {
    absl::StatusOr<std::unique_ptr<PortLock>> acquired =
        PortLock::Acquire(options.lock_dir, options.port);
    if (!acquired.ok()) {
      LOG(ERROR) << "startup failed: " << acquired.status().message();
      return 1;
    }
    lock = *std::move(acquired);
  }
  absl::StatusOr<std::vector<ModelSpec>> specs = LoadModelRepository(options.model_repository);
  if (!specs.ok()) {
    LOG(ERROR) << "startup failed: model repository: " << specs.status().message();
    return 1;
  }
  timeline.Phase(absl::StrCat("read model repository ", options.model_repository, " (",
                              specs->size(), " models)"));

  // 2. Load every model: map the weights, load TorchScript, rebind, load the tokenizer. Still
  // one thread. (In the --share_weights=off baseline the master loads only the tokenizers: every
  // worker loads its own copy of the model.)
  absl::StatusOr<LoadedModels> models = LoadModels(*specs, options.share_weights, timeline);
  if (!models.ok()) {
    LOG(ERROR) << "startup failed: " << models.status().message();
    return 1;
  }

  // 3. Fork the zygote, then (only then) start threads.
  absl::StatusOr<std::pair<FrameChannel, FrameChannel>> channel = FrameChannel::CreatePair();
  if (!channel.ok()) {
    LOG(ERROR) << "startup failed: " << channel.status();
    return 1;
  }
  std::map<std::string, ModelReplay> replay = LoadTrafficReplay(*specs, options.state_dir);
  for (auto& [name, model] : models->by_name) {
    auto found = replay.find(name);
    if (found != replay.end() && !found->second.samples.empty()) {
      model.samples = &found->second.samples;
    }
  }
  absl::StatusOr<MemoryLimit> memory = ProcessMemoryLimit();
  if (memory.ok()) {
    LOG(INFO) << "memory: " << memory->Describe() << " for the whole server";
  } else {
    LOG(WARNING) << "memory: no limit known (" << memory.status().message()
                 << "); workers run without a memory budget";
  }
  const CpuSetup cpu = PlanCpu(options, *specs, *models, memory.ok() ? memory->bytes : 0);
  absl::StatusOr<pid_t> zygote =
      ForkZygote(models->by_name, channel->first, std::move(channel->second));
  if (!zygote.ok()) {
    LOG(ERROR) << "startup failed: " << zygote.status().message();
    return 1;
  }
  channel->second.Close();
  timeline.Phase(absl::StrCat("forked the zygote (pid ", *zygote, ")"));

  // 4. The zygote forks the workers; each warms and reports.
  WorkerPoolOptions pool_options;
  pool_options.threads = cpu.plan.models;
  pool_options.warm_at_idle_priority = cpu.warm_at_idle_priority;
  pool_options.warmup = options.warmup;
  pool_options.memory_limit_bytes = memory.ok() ? memory->bytes : 0;
  for (const auto& [name, model] : replay) pool_options.replay[name] = model.shapes;
  TrafficRecorder recorder(options.record_samples);
  std::atomic<bool> serving{false};  // the readiness check's requests are not traffic
  if (!options.state_dir.empty()) {
    std::map<std::string, std::string> text_inputs;  // text models' text input names
    for (const ModelSpec& spec : *specs) {
      if (spec.config.has_tokenizer()) {
        text_inputs[spec.config.name()] = spec.config.tokenizer().text_input();
      }
    }
    pool_options.on_shape = [&recorder, &serving, text_inputs](
                                const std::string& model, int32_t batch, int32_t length,
                                const std::vector<std::string>* texts) {
      if (!serving.load(std::memory_order_relaxed)) return;
      recorder.Record(model, batch, length);
      // Numeric requests are sampled as they arrive (InferenceService); a text request once the
      // worker has tokenized it, so that it is kept per shape it ran as.
      const auto text_input = text_inputs.find(model);
      if (texts != nullptr && text_input != text_inputs.end()) {
        recorder.RecordTextSample(model, text_input->second, *texts, batch, length);
      }
    };
  }
  absl::StatusOr<std::unique_ptr<WorkerPool>> pool =
      WorkerPool::Start(std::move(channel->first), *specs, pool_options);
  if (!pool.ok()) {
    LOG(ERROR) << "startup failed: " << pool.status().message();
    ReapZygote(*zygote, /*now=*/true);
    return 1;
  }
  NotifySystemd("STATUS=warming workers");
  if (const std::optional<int> code = WaitForQuorum(**pool, options); code.has_value()) {
    (*pool)->Stop();
    ReapZygote(*zygote, /*now=*/false);
    return *code;
  }
  timeline.Phase(absl::StrCat("workers warm (", ReadySummary(**pool), ")"));

  // 5. The readiness check through the whole path, then open the port, turn health SERVING,
  // tell systemd.
  NotifySystemd("STATUS=readiness check");
  if (CheckReadiness(options, **pool, *specs) != 0) {
    (*pool)->Stop();
    ReapZygote(*zygote, /*now=*/false);
    return 1;
  }
  timeline.Phase("readiness check passed");
  InferenceService service(*specs, **pool, options.record_samples > 0 ? &recorder : nullptr);
  StartupReport startup;
  startup.timeline = timeline.phases();
  startup.memory_limit = memory.ok() ? memory->Describe() : "unknown";
  startup.cpu = cpu;
  for (const auto& [name, model] : replay) startup.replayed[name] = model.shapes;
  KilnServiceImpl kiln_service(*specs, **pool, std::move(startup));
  (*pool)->ResetCounters();  // serving counters and traffic start with the first client's request
  (*pool)->StartServing();   // workers that warmed at idle priority return to normal now
  serving.store(true);
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartGrpc(options, service, kiln_service, port);
  if (server == nullptr || port == 0) {
    LOG(ERROR) << "startup failed: cannot listen on " << options.host << ":" << options.port
               << " (in use by another process, or not a local address)";
    (*pool)->Stop();
    ReapZygote(*zygote, /*now=*/false);
    return 1;
  }
  grpc::HealthCheckServiceInterface& health = *server->GetHealthCheckService();
  std::map<std::string, bool> health_state;
  UpdateHealth(health, **pool, *specs, health_state);
  timeline.Phase(absl::StrCat("ready: serving gRPC on ", options.host, ":", port));
  kiln_service.SetTimeline(timeline.phases());
  NotifySystemd(absl::StrCat("READY=1\nSTATUS=serving on ", options.host, ":", port));

  // The main loop: signals, health, the systemd watchdog.
  const uint64_t watchdog_usec = SystemdWatchdogUsec();
  int exit_code = 0;
  auto next_save = std::chrono::steady_clock::now() + kTrafficSaveInterval;
  while (true) {
    const int sig = NextSignal(200);
    if (sig == SIGINT) {
      // At once: no drain, and no graceful gRPC shutdown (which waits on every client's
      // GOAWAY acknowledgement). The workers die with the zygote.
      LOG(INFO) << "SIGINT: exiting now";
      ReapZygote(*zygote, /*now=*/true);
      google::FlushLogFiles(google::GLOG_INFO);
      _exit(130);
    }
    if (sig == SIGTERM) break;
    if (sig != 0) LOG(WARNING) << strsignal(sig) << ": not supported by this version; ignored";
    if (absl::Status fatal = (*pool)->fatal_error(); !fatal.ok()) {
      LOG(ERROR) << "cannot keep serving: " << fatal.message();
      exit_code = 1;
      break;
    }
    UpdateHealth(health, **pool, *specs, health_state);
    if (watchdog_usec > 0 && (*pool)->AllModelsReady()) NotifySystemd("WATCHDOG=1");
    if (!options.state_dir.empty() && std::chrono::steady_clock::now() >= next_save) {
      SaveTraffic(recorder, options.state_dir);
      next_save += kTrafficSaveInterval;
    }
  }

  // TERM: stop accepting, let in-flight requests finish, then take the process tree down.
  LOG(INFO) << "draining: health NOT_SERVING, finishing in-flight requests (up to "
            << options.drain_timeout_s << " s)";
  NotifySystemd("STOPPING=1\nSTATUS=draining");
  service.SetDraining();
  health.Shutdown();
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::seconds(options.drain_timeout_s));
  (*pool)->Stop();
  ReapZygote(*zygote, /*now=*/false);
  if (!options.state_dir.empty()) SaveTraffic(recorder, options.state_dir);
  LOG(INFO) << "stopped";
  return exit_code;
}

}  // namespace kiln
