#include "server/master.h"

#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/fork_safety.h"
#include "common/memory_probe.h"
#include "common/model_config_loader.h"
#include "common/openmp_wait.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "glog/logging.h"
#include "server/cpu_plan.h"
#include "server/front/inference_service.h"
#include "server/front/kiln_service.h"
#include "server/front/readiness_check.h"
#include "server/front/tls_credentials.h"
#include "server/front/traffic_recording.h"
#include "server/metrics/memory_sampler.h"
#include "server/metrics/metrics.h"
#include "server/metrics/metrics_endpoint.h"
#include "server/metrics/pool_metrics.h"
#include "server/port_lock.h"
#include "server/reloader.h"
#include "server/supervisor/master_state.h"
#include "server/supervisor/worker_pool.h"
#include "server/systemd_notify.h"
#include "server/zygote/model_loading.h"
#include "server/zygote/traffic_replay.h"
#include "server/zygote/zygote.h"
#include "server/zygote/zygote_mode.h"
#include "worker/torch_model.h"

namespace kiln {
namespace {

// The pool raises it (WorkerPoolOptions::on_change) when a worker becomes ready or the pool turns
// fatal, so that the master's wait for the quorum ends at once rather than on its next tick.
int WakeSignal() { return SIGRTMIN; }

// Signals the master handles in its own loop (sigtimedwait): no handler runs at all, and every
// thread started later inherits the mask, so only the main thread ever sees them.
sigset_t ControlSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGTTIN, SIGTTOU, WakeSignal()}) sigaddset(&set, sig);
  return set;
}

// Times the phases of the startup timeline (docs/ARCHITECTURE.md, "Startup timeline").
// Ownership: borrows the metrics. Thread-safety: the master's main thread only.
class Timeline {
 public:
  // Its clock starts with the process (SecondsSinceProcessStart), so that the first phase is what
  // ran before main(); with the time of its construction where /proc cannot say.
  explicit Timeline(ServerMetrics& metrics) : metrics_(metrics) {
    if (std::optional<double> age = SecondsSinceProcessStart()) {
      start_ -= std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(*age));
      last_ = start_;
    }
  }

  // Logs "startup: <what> in <ms> ms" for the time since the previous call, keeps it, and sets
  // the phase's metric: `step` is its stable name, `spec` the model version it was for (if any).
  void Phase(const std::string& step, const std::string& what, const ModelSpec* spec = nullptr) {
    const auto now = std::chrono::steady_clock::now();
    LOG(INFO) << absl::StrFormat("startup: %s in %.1f ms (%.1f ms since start)", what,
                                 Ms(last_, now), Ms(start_, now));
    StartupPhase& phase = phases_.emplace_back();
    phase.set_name(what);
    phase.set_duration_ms(Ms(last_, now));
    phase.set_since_start_ms(Ms(start_, now));
    metrics_.StartupPhase(step, spec == nullptr ? "" : spec->config.name(),
                          spec == nullptr ? "" : std::to_string(spec->version),
                          Ms(last_, now) / 1e3);
    last_ = now;
  }
  const std::vector<StartupPhase>& phases() const { return phases_; }
  double SecondsSinceStart() const {
    return Ms(start_, std::chrono::steady_clock::now()) / 1e3;
  }

 private:
  static double Ms(std::chrono::steady_clock::time_point a,
                   std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  }
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_ = start_;
  ServerMetrics& metrics_;
  std::vector<StartupPhase> phases_;
};

std::string ReadySummary(const WorkerPool& pool) {
  int ready = 0, total = 0;
  for (const WorkerInfo& worker : pool.Workers()) {
    ++total;
    ready += worker.state == WorkerState::kReady || worker.state == WorkerState::kBusy;
  }
  return absl::StrCat(ready, "/", total, " workers warm");
}

// What every gRPC server of the master shares: the default health service, reflection, the
// message size limits and the calls one client connection may have open at once (HTTP/2's
// SETTINGS_MAX_CONCURRENT_STREAMS: a client's further calls wait on its side).
void ConfigureGrpc(const MasterOptions& options, grpc::ServerBuilder& builder) {
  NoteGrpcObjectCreated();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  builder.SetMaxReceiveMessageSize(options.max_message_mb << 20);
  builder.SetMaxSendMessageSize(options.max_message_mb << 20);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams);
  if (options.grpc_memory_mb > 0) {
    grpc::ResourceQuota quota("kiln-grpc");
    quota.Resize(static_cast<size_t>(options.grpc_memory_mb) << 20);
    builder.SetResourceQuota(quota);
  }
}

// A stub on an in-process channel to `server` (one ConfigureGrpc configured), with the same
// message size limits: the readiness check's and the port's priming requests.
std::unique_ptr<inference::GRPCInferenceService::Stub> InProcessStub(const MasterOptions& options,
                                                                     grpc::Server& server) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(options.max_message_mb << 20);
  arguments.SetMaxSendMessageSize(options.max_message_mb << 20);
  return inference::GRPCInferenceService::NewStub(server.InProcessChannel(arguments));
}

// " over TLS" / " over mutual TLS" / "" for the startup line.
std::string TlsDescription(const TlsFiles& tls) {
  if (!tls.enabled()) return "";
  return tls.ca.empty() ? " over TLS" : " over mutual TLS";
}

// Publishes the health of "" and of each model (SERVING while each of its served versions is)
// from the pool's quorums, logging a model that drops below its quorum or comes back. The gRPC
// services kiln serves answer as "" does, for probes that name one (`grpc_health_probe
// -service inference.GRPCInferenceService`, a Kubernetes grpc probe's `service`).
// Ownership: borrows the health service and the pool. Thread-safety: the master's main thread
// only.
class HealthPublisher {
 public:
  HealthPublisher(grpc::HealthCheckServiceInterface& health, const WorkerPool& pool)
      : health_(health), pool_(pool) {}

  void Update() {
    std::set<std::string> names;
    for (const SharedSpec& spec : pool_.Served()) names.insert(spec->config.name());
    bool all = true;
    for (const std::string& name : names) {
      const bool ready = pool_.ModelReady(name);
      all = all && ready;
      Publish(name, ready);
    }
    // A model a reload took out (unloaded, or gone from the repository) is not served any more.
    for (const auto& [service, serving] : std::map<std::string, bool>(last_)) {
      if (!service.empty() && !IsGrpcService(service) && names.count(service) == 0) {
        Publish(service, false);
      }
    }
    Publish("", all);
    for (const char* service : kGrpcServices) Publish(service, all);
  }

 private:
  static constexpr const char* kGrpcServices[] = {"inference.GRPCInferenceService",
                                                  "kiln.KilnService"};
  static bool IsGrpcService(const std::string& name) {
    for (const char* service : kGrpcServices) {
      if (name == service) return true;
    }
    return false;
  }

  void Publish(const std::string& service, bool serving) {
    auto [last, first] = last_.emplace(service, serving);
    if (!first && last->second == serving) return;
    // Each name by itself: gRPC's SetServingStatus(bool) would set every name, so a model
    // below its quorum would take the healthy models' own statuses down with "".
    health_.SetServingStatus(service, serving);
    if (!service.empty()) {
      LOG_IF(WARNING, !first && !IsGrpcService(service))
          << "model " << service << ": "
          << (serving ? "SERVING again" : "NOT_SERVING (below quorum, or not served)");
    }
    last->second = serving;
  }

  grpc::HealthCheckServiceInterface& health_;
  const WorkerPool& pool_;
  std::map<std::string, bool> last_;  // by service name; "" is the server
};

// The master process: one object per run, driven through MasterState
// (server/supervisor/master_state.h) by one method per phase. Every phase returns OK to go on,
// Cancelled when a signal asked to stop (exit 0), or the error that stops the server (exit 1).
// Teardown() is the one place that stops the workers.
//
// Ownership: owns everything the master holds: the port lock, the specs, the loaded models, the
// pool (which owns each zygote generation), the reloader, the gRPC server and its services.
// Thread-safety: its methods run on the main thread only, except StartZygote, which the pool
// calls on its thread to replace a zygote (it reads only the options and the CPU setup); the
// services it registers run on gRPC's threads and use only the thread-safe pool, reloader and
// state machine.
class Master {
 public:
  explicit Master(const MasterOptions& options) : options_(options) {}
  ~Master();

  // Runs every phase and returns the process's exit code. SIGINT does not return: it exits 130.
  int Run();

 private:
  absl::Status Load();   // kLoading: port lock, repository, models, memory and CPU plans
  absl::Status Warm();   // kWarming: the zygote, the pool, every model's quorum
  absl::Status Check();  // kChecking: the readiness check through the whole request path
  absl::Status Serve();  // kServing: open the port; the main loop until TERM or a fatal error
  // Makes the request series of every served version (ServerMetrics::Version) before a client's
  // request would: at the port's opening and at a reload's switch, so that no first request pays
  // for creating them (0.2 ms, measured on the demo mlp's first request) and every series reads 0
  // from the start. Nothing without a metrics endpoint.
  void PrepareRequestMetrics();
  // Primes the port's own request path (PrimeServingPath, through an in-process channel to
  // server_) before health says SERVING, and times it as the prime_port phase.
  void PrimePort();
  // One turn of the serving loop: signals (up to `timeout_ms`), health, the watchdog, recorded
  // traffic, zygotes of closed generations reaped. An error when the pool can no longer serve.
  absl::Status Tick(int timeout_ms);
  // The readiness check of `specs` (Served, or the Staged versions of a reload with `staged`),
  // through a private in-process gRPC server; up to three attempts.
  absl::Status CheckVersions(const std::vector<SharedSpec>& specs, bool staged);
  void Drain();          // kDraining: health NOT_SERVING, in-flight calls finish
  void Teardown();       // kStopped: stop the pool, reap the zygote, save the traffic

  absl::Status Enter(MasterState next);

  // Waits up to `timeout_ms` for a control signal and hands it to its handler. The handlers run
  // on the main thread (the signals are blocked everywhere and taken by sigtimedwait).
  void PollSignals(int timeout_ms);
  void OnTerm();
  void OnInt();
  // TTIN adds one worker to every served version, TTOU removes one (gunicorn's meaning); only while
  // serving, and never below one worker.
  void OnScale(int sig);
  void OnUnsupported(int sig);
  // HUP: reload the whole repository (server/reloader.h), only while serving.
  void OnHup();
  // Starts generation `generation`'s zygote by fork+exec (server/zygote/zygote_mode.h), loading the
  // versions `models`: a `replacement` for one that died (the pool reaped it), or a reload's.
  // The pool owns what it returns. Called on the pool's thread (a replacement) or the main thread
  // (a reload); it touches only the options and the CPU setup, both fixed by then.
  absl::StatusOr<ZygoteProcess> StartZygote(int generation, const std::vector<std::string>& models,
                                            bool replacement);
  // The workers and threads of a version a reload loads: those the CPU plan gave the model.
  ModelThreads ThreadsFor(const ModelSpec& spec) const;
  // Starts answering scrapes and sampling memory (once the zygote is forked and the pool runs);
  // with TLS, the endpoint reads the key now, so the zygote never had it.
  absl::Status StartMetrics();

  const MasterOptions& options_;
  MasterStateMachine state_;
  bool stop_requested_ = false;  // TERM arrived
  ServerMetrics metrics_{BuildInfo{KILN_VERSION, grpc::Version(), LibTorchVersion()}};
  Timeline timeline_{metrics_};
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;  // bound from the start (--metrics_port)
  std::unique_ptr<PortLock> lock_;
  std::vector<ModelSpec> specs_;
  LoadedModels models_;
  std::map<std::string, ModelReplay> replay_;
  MemoryLimit memory_limit_;  // bytes 0: unknown
  CpuSetup cpu_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<Reloader> reloader_;
  std::unique_ptr<HealthPublisher> health_;
  std::unique_ptr<TrafficRecording> recording_;  // with --state_dir
  // Text's token counts for the batcher: the readiness check's service and the port's share it.
  TextTokens text_tokens_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<KilnServiceImpl> kiln_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MemorySampler> memory_sampler_;
};

Master::~Master() {
  // The endpoint's and the sampler's threads read the pool: they stop first.
  metrics_endpoint_.reset();
  memory_sampler_.reset();
}

absl::Status Master::StartMetrics() {
  if (metrics_endpoint_ == nullptr) return absl::OkStatus();
  metrics_.AddCollector(std::make_shared<PoolStateCollector>(*pool_, state_));
  memory_sampler_ = std::make_unique<MemorySampler>(
      metrics_, *pool_, memory_limit_.bytes,
      std::chrono::seconds(options_.metrics_memory_interval_s));
  RETURN_IF_ERROR(metrics_endpoint_->Start([this] { return metrics_.Render(); }));
  LOG(INFO) << "metrics: answering on " << (options_.tls.enabled() ? "https" : "http") << "://"
            << options_.host << ":" << metrics_endpoint_->port() << "/metrics";
  return absl::OkStatus();
}

absl::StatusOr<ZygoteProcess> Master::StartZygote(int generation,
                                                  const std::vector<std::string>& models,
                                                  bool replacement) {
  ASSIGN_OR_RETURN(auto pair, FrameChannel::CreatePair());
  ASSIGN_OR_RETURN(const pid_t pid,
                   SpawnZygoteProcess({options_.model_repository, options_.share_weights,
                                       options_.state_dir, models, cpu_.warm_at_idle_priority},
                                      pair.second));
  LOG_IF(WARNING, replacement) << "started a new zygote by fork+exec (pid " << pid
                               << ") for generation " << generation
                               << "; the live workers keep serving";
  LOG_IF(INFO, !replacement) << "reload: started the zygote of generation " << generation
                             << " by fork+exec (pid " << pid << ") for "
                             << absl::StrJoin(models, ", ");
  return ZygoteProcess{pid, std::move(pair.first)};
}

ModelThreads Master::ThreadsFor(const ModelSpec& spec) const {
  for (const auto& [key, threads] : cpu_.plan.models) {
    if (key.substr(0, key.rfind(':')) == spec.config.name()) return threads;
  }
  const InstanceConfig& group = spec.config.instance_group();
  ModelThreads threads;
  threads.workers =
      std::max(options_.workers_per_model > 0 ? options_.workers_per_model : group.count(), 1);
  threads.intra_op_threads = std::max(group.intra_op_threads(), 1);
  return threads;
}

absl::Status Master::Enter(MasterState next) {
  RETURN_IF_ERROR(state_.TransitionTo(next));
  VLOG(1) << "master: " << MasterStateName(next);
  return absl::OkStatus();
}

int Master::Run() {
  const sigset_t control = ControlSignals();
  sigprocmask(SIG_BLOCK, &control, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Everything the master starts stays in its process tree: a worker whose zygote dies is
  // re-parented to the master, not to init, and the pool reaps it (WorkerPool::ReapLocked).
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    PLOG(WARNING) << "prctl(PR_SET_CHILD_SUBREAPER): orphaned workers will be re-parented to init";
  }

  absl::Status status = Load();
  if (status.ok()) status = Warm();
  if (status.ok()) status = Check();
  if (status.ok()) status = Serve();
  int exit_code = 0;
  if (!status.ok() && !absl::IsCancelled(status)) {
    LOG(ERROR) << (state_.state() == MasterState::kServing ? "cannot keep serving: "
                                                           : "startup failed: ")
               << status.message();
    exit_code = 1;
  }
  if (state_.state() == MasterState::kServing) Drain();
  Teardown();
  return exit_code;
}

absl::Status Master::Load() {
  timeline_.Phase("start_process",
                  "process started (its libraries loaded and initialised before main(), LibTorch's "
                  "among them)");
  // Flags were parsed by main. The port lock first: a second server must fail before loading.
  if (options_.port != 0) {
    ASSIGN_OR_RETURN(lock_, PortLock::Acquire(options_.lock_dir, options_.port));
  }
  // kiln reads its traffic profiles back and rewrites them: nobody else may put files there.
  if (!options_.state_dir.empty()) RETURN_IF_ERROR(PrepareStateDirectory(options_.state_dir));
  // Checked now, so that a bad file fails the start before the models load, naming the flag and
  // the path; read again by the metrics endpoint after the zygote is forked, and for gRPC when
  // the port opens, so that the key is not in the memory of the zygote and the workers.
  RETURN_IF_ERROR(ReadTlsFiles(options_.tls).status());
  // Bound now (a port in use fails the start at once); it answers once the zygote is forked.
  if (options_.metrics_port != 0) {
    ASSIGN_OR_RETURN(metrics_endpoint_,
                     MetricsEndpoint::Bind(options_.host, options_.metrics_port, options_.tls));
  }
  absl::StatusOr<std::vector<ModelSpec>> specs = LoadModelRepository(options_.model_repository);
  if (!specs.ok()) return Annotate(specs.status(), "model repository");
  specs_ = *std::move(specs);
  LogConfigNotes(specs_);
  timeline_.Phase("read_repository",
                  absl::StrCat("read model repository ", options_.model_repository, " (",
                               specs_.size(), " served model versions)"));

  // Still one thread. (In the --share_weights=off baseline the master loads only the
  // tokenizers: every worker loads its own copy of the model.)
  ASSIGN_OR_RETURN(models_, LoadModels(specs_, options_.share_weights,
                                       [this](const std::string& step, const ModelSpec& spec,
                                              const std::string& what) {
                                         timeline_.Phase(step, what, &spec);
                                       }));
  for (const auto& [key, model] : models_.by_key) {
    if (model.tokenizer != nullptr) text_tokens_.Adopt(*model.spec, model.tokenizer);
  }
  replay_ = LoadTrafficReplay(specs_, options_.state_dir);
  AttachSamples(replay_, models_);
  if (absl::StatusOr<MemoryLimit> memory = ProcessMemoryLimit(); memory.ok()) {
    memory_limit_ = *memory;
    LOG(INFO) << "memory: " << memory_limit_.Describe() << " for the whole server";
  } else {
    LOG(WARNING) << "memory: no limit known (" << memory.status().message()
                 << "); workers run without a memory budget";
  }
  CpuOptions cpu_options;
  cpu_options.cpus = options_.cpus;
  cpu_options.workers_per_model = options_.workers_per_model;
  cpu_options.warmup = options_.warmup;
  cpu_options.warm_at_idle_priority = options_.warm_at_idle_priority;
  cpu_ = PlanCpu(cpu_options, specs_, models_, memory_limit_.bytes);
  return absl::OkStatus();
}

absl::Status Master::Warm() {
  RETURN_IF_ERROR(Enter(MasterState::kWarming));
  // Fork the zygote, then (only then) start threads.
  ASSIGN_OR_RETURN(auto channel, FrameChannel::CreatePair());
  std::vector<int> close_in_zygote;
  if (metrics_endpoint_ != nullptr) close_in_zygote.push_back(metrics_endpoint_->listening_fd());
  ASSIGN_OR_RETURN(const pid_t zygote, ForkZygote(models_.by_key, channel.first,
                                                  std::move(channel.second), close_in_zygote));
  channel.second.Close();
  timeline_.Phase("fork_zygote", absl::StrCat("forked the zygote (pid ", zygote, ")"));

  // The zygote forks the workers; each warms and reports.
  WorkerPoolOptions pool_options;
  pool_options.threads = cpu_.plan.models;
  pool_options.warm_at_idle_priority = cpu_.warm_at_idle_priority;
  pool_options.warmup = options_.warmup;
  pool_options.warm_template = options_.warm_template;
  pool_options.cold_calls_for_test = options_.cold_calls_for_test;
  pool_options.restart_zygote = [this](int generation, const std::vector<std::string>& models) {
    return StartZygote(generation, models, /*replacement=*/true);
  };
  pool_options.on_change = [master = getpid()] { kill(master, WakeSignal()); };
  pool_options.on_worker_died = [this](const ModelSpec& spec) {
    metrics_.WorkerDied(spec.config.name(), spec.version);
  };
  pool_options.on_worker_respawned = [this](const ModelSpec& spec, double seconds) {
    metrics_.WorkerRespawned(spec.config.name(), spec.version, seconds);
  };
  pool_options.on_worker_ready = [this](const ModelSpec& spec, WorkerStart cause, double fork_s,
                                        double warm_s) {
    metrics_.WorkerStartPhases(spec.config.name(), spec.version, WorkerStartName(cause), fork_s,
                               warm_s);
  };
  pool_options.memory_limit = memory_limit_;
  pool_options.reap_adopted = true;  // the master is the subreaper (Run)
  for (const auto& [name, model] : replay_) pool_options.replay[name] = model.shapes;
  // From here the pool owns the zygote (its pid, its channel, its deaths) and reaps it, also when
  // Start fails.
  ASSIGN_OR_RETURN(pool_, WorkerPool::Start({zygote, std::move(channel.first)}, specs_, pool_options));
  RETURN_IF_ERROR(StartMetrics());  // threads may start now that the zygote is forked
  NotifySystemd("STATUS=warming workers");

  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(options_.startup_timeout_s);
  auto next_extend = std::chrono::steady_clock::now();
  while (!pool_->AllModelsReady()) {
    RETURN_IF_ERROR(pool_->fatal_error());
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("workers not warm after ", options_.startup_timeout_s,
                       " s (--startup_timeout_s); ", ReadySummary(*pool_)));
    }
    if (std::chrono::steady_clock::now() >= next_extend) {
      // Warming can outlast systemd's TimeoutStartSec; tell it we are making progress.
      NotifySystemd(
          absl::StrCat("EXTEND_TIMEOUT_USEC=30000000\nSTATUS=warming: ", ReadySummary(*pool_)));
      next_extend += std::chrono::seconds(10);
    }
    PollSignals(50);
    if (stop_requested_) return absl::CancelledError("TERM while warming");
  }
  timeline_.Phase("warm_workers", absl::StrCat("workers warm (", ReadySummary(*pool_), ")"));
  return absl::OkStatus();
}

absl::Status Master::Check() {
  RETURN_IF_ERROR(Enter(MasterState::kChecking));
  NotifySystemd("STATUS=readiness check");
  RETURN_IF_ERROR(CheckVersions(pool_->Served(), /*staged=*/false));
  timeline_.Phase("readiness_check", "readiness check passed");
  return absl::OkStatus();
}

absl::Status Master::CheckVersions(const std::vector<SharedSpec>& specs, bool staged) {
  // Through a private gRPC server that listens on no port: only an in-process channel reaches
  // it, and it records no traffic.
  constexpr int kReadinessAttempts = 3;
  for (int attempt = 1; attempt <= kReadinessAttempts; ++attempt) {
    InferenceService service(*pool_, state_, CheckServiceOptions(staged, &text_tokens_));
    grpc::ServerBuilder builder;
    ConfigureGrpc(options_, builder);
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (server == nullptr) {
      return absl::InternalError("cannot start the readiness check's in-process server");
    }
    const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
        InProcessStub(options_, *server);
    absl::StatusOr<std::vector<ReadinessResult>> results =
        RunReadinessCheck(*stub, specs, pool_->Workers(), options_.warmup, OpenMpThreadsSpin(),
                          ReadinessRounds(attempt));
    server->Shutdown();
    if (!results.ok()) return Annotate(results.status(), "readiness check");
    bool passed = true;
    for (const ReadinessResult& result : *results) {
      if (result.skipped.empty()) {
        for (const SharedSpec& spec : specs) {
          if (spec->key() != result.model) continue;
          metrics_.ReadinessChecked(spec->config.name(), spec->version,
                                    {result.p95_ms, result.cpu_p95_ms, result.cpu_median_ms,
                                     result.limit_ms, result.passed()});
        }
      }
      LOG_IF(INFO, result.passed()) << "readiness check: " << result.Describe();
      LOG_IF(WARNING, !result.passed()) << "readiness check (attempt " << attempt << " of "
                                        << kReadinessAttempts << "): " << result.Describe();
      passed = passed && result.passed();
    }
    if (passed) return absl::OkStatus();
  }
  return absl::UnavailableError(
      absl::StrCat("the readiness check did not pass in ", kReadinessAttempts,
                   " attempts (see kiln.pbtxt's readiness.max_p95_factor and check_allowance_ms)"));
}

void Master::PrimePort() {
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      InProcessStub(options_, *server_);
  absl::StatusOr<int> primed =
      PrimeServingPath(*stub, pool_->Served(), pool_->Workers(), options_.warmup);
  // A failure is no client's: the pool replaces a worker that died, and health says so.
  LOG_IF(WARNING, !primed.ok()) << "priming the port's request path: " << primed.status();
  timeline_.Phase("prime_port",
                  absl::StrCat("primed the port's request path: ", primed.value_or(0),
                               primed.value_or(0) == 1 ? " request" : " requests",
                               " (one per served version, at its smallest warmed shape) "
                               "through the port's own gRPC server, in process, while health said "
                               "NOT_SERVING"));
}

void Master::PrepareRequestMetrics() {
  if (metrics_endpoint_ == nullptr) return;
  for (const SharedSpec& spec : pool_->Served())
    metrics_.Version(spec->config.name(), spec->version);
}

absl::Status Master::Serve() {
  if (!options_.state_dir.empty()) {
    recording_ = std::make_unique<TrafficRecording>(options_.state_dir, options_.record_samples);
  }
  ReloadHooks hooks;
  hooks.start_zygote = [this](int generation, const std::vector<std::string>& models) {
    return StartZygote(generation, models, /*replacement=*/false);
  };
  hooks.check_staged = [this] { return CheckVersions(pool_->Served(/*staged=*/true), true); };
  hooks.wake = [master = getpid()] { kill(master, WakeSignal()); };
  hooks.threads_for = [this](const ModelSpec& spec) { return ThreadsFor(spec); };
  hooks.switched = [this] {
    PrepareRequestMetrics();
    health_->Update();
  };
  hooks.phase_done = [this](const std::string& phase, double seconds) {
    metrics_.ReloadPhase(phase, seconds);
  };
  reloader_ = std::make_unique<Reloader>(options_.model_repository, *pool_, std::move(hooks),
                                         options_.startup_timeout_s);
  InferenceServiceOptions service_options;
  service_options.recording = recording_.get();
  service_options.repository = reloader_.get();
  service_options.model_control = options_.model_control;
  service_options.text_tokens = &text_tokens_;
  // Requests are counted only where they can be scraped (--metrics_port=0: no work per request).
  if (metrics_endpoint_ != nullptr) service_options.metrics = &metrics_;
  service_options.counted_from_start = false;  // from SERVING on, not the priming requests
  PrepareRequestMetrics();
  service_ = std::make_unique<InferenceService>(*pool_, state_, service_options);
  StartupReport startup;
  startup.timeline = timeline_.phases();
  startup.memory_limit = memory_limit_.bytes > 0 ? memory_limit_.Describe() : "unknown";
  startup.cpu = cpu_;
  for (const auto& [name, model] : replay_) startup.replayed[name] = model.shapes;
  kiln_service_ = std::make_unique<KilnServiceImpl>(*pool_, std::move(startup));
  pool_->StartServing();  // workers that warmed at idle priority return to normal now

  ASSIGN_OR_RETURN(const TlsPem tls_pem, ReadTlsFiles(options_.tls));
  grpc::ServerBuilder builder;
  ConfigureGrpc(options_, builder);
  // gRPC sets SO_REUSEPORT by default, which would let a second server share the port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  builder.AddListeningPort(absl::StrCat(options_.host, ":", options_.port),
                           GrpcServerCredentials(tls_pem), &port);
  builder.RegisterService(service_.get());
  builder.RegisterService(kiln_service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options_.host, ":", options_.port,
        " (in use by another process, or not a local address",
        options_.tls.enabled() ? ", or gRPC refused the TLS certificate or key: see the log" : "",
        ")"));
  }
  // gRPC's health service answers SERVING for "" from the start: not before the port's own
  // request path is primed (it listens meanwhile, and would serve a request sent anyway).
  server_->GetHealthCheckService()->SetServingStatus(false);
  PrimePort();
  pool_->ResetCounters();  // serving counters start with the first client's request
  service_->StartCounting();
  RETURN_IF_ERROR(Enter(MasterState::kServing));
  health_ = std::make_unique<HealthPublisher>(*server_->GetHealthCheckService(), *pool_);
  health_->Update();
  timeline_.Phase("open_port", absl::StrCat("ready: serving gRPC", TlsDescription(options_.tls),
                                            " on ", options_.host, ":", port));
  metrics_.Serving(timeline_.SecondsSinceStart());
  kiln_service_->SetTimeline(timeline_.phases());
  NotifySystemd(absl::StrCat("READY=1\nSTATUS=serving on ", options_.host, ":", port));

  // The main loop: signals, health, the systemd watchdog, saving the recorded traffic, and one
  // step of a reload per turn (server/reloader.h; turns come faster while one is under way).
  while (!stop_requested_) {
    RETURN_IF_ERROR(Tick(reloader_->step() == ReloadStep::kIdle ? 200 : 50));
    reloader_->Advance();
  }
  return absl::OkStatus();
}

absl::Status Master::Tick(int timeout_ms) {
  static const uint64_t watchdog_usec = SystemdWatchdogUsec();
  PollSignals(timeout_ms);
  RETURN_IF_ERROR(pool_->fatal_error());
  health_->Update();
  if (watchdog_usec > 0 && pool_->AllModelsReady()) NotifySystemd("WATCHDOG=1");
  if (recording_ != nullptr) recording_->SaveIfDue();
  return absl::OkStatus();
}

void Master::Drain() {
  if (!Enter(MasterState::kDraining).ok()) return;
  // Stop accepting, let in-flight requests finish (TERM, or the pool can no longer serve);
  // Teardown takes the process tree down.
  LOG(INFO) << "draining: health NOT_SERVING, finishing in-flight requests (up to "
            << options_.drain_timeout_s << " s)";
  NotifySystemd("STOPPING=1\nSTATUS=draining");
  server_->GetHealthCheckService()->Shutdown();
  service_->StopStreams();  // streams answer what they read, then end
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::seconds(options_.drain_timeout_s));
}

void Master::Teardown() {
  // Every state may stop; only Stopped itself cannot, and Teardown runs once.
  (void)Enter(MasterState::kStopped);
  if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
  if (reloader_ != nullptr) reloader_->Cancel(absl::UnavailableError("server is stopping"));
  // Closing the zygotes' channels lets them leave by themselves (their workers die with them);
  // the pool reaps them.
  if (pool_ != nullptr) pool_->Stop();
  if (recording_ != nullptr) recording_->Save();
  LOG(INFO) << "stopped";
}

void Master::PollSignals(int timeout_ms) {
  const sigset_t set = ControlSignals();
  timespec timeout{timeout_ms / 1000, (timeout_ms % 1000) * 1'000'000L};
  const int sig = sigtimedwait(&set, nullptr, &timeout);
  if (sig == SIGTERM) {
    OnTerm();
  } else if (sig == SIGINT) {
    OnInt();
  } else if (sig == SIGTTIN || sig == SIGTTOU) {
    OnScale(sig);
  } else if (sig == SIGHUP) {
    OnHup();
  } else if (sig > 0 && sig != WakeSignal()) {
    OnUnsupported(sig);
  }
}

void Master::OnTerm() {
  // Warming or checking: stop (exit 0). Serving: drain first.
  LOG_IF(INFO, state_.state() != MasterState::kServing)
      << "startup: " << strsignal(SIGTERM) << " while warming; stopping";
  stop_requested_ = true;
}

void Master::OnInt() {
  // At once: no drain, and no graceful gRPC shutdown (which waits on every client's GOAWAY
  // acknowledgement). The workers die with the zygote.
  LOG(INFO) << "SIGINT: exiting now";
  if (pool_ != nullptr) pool_->KillZygotes();
  google::FlushLogFiles(google::GLOG_INFO);
  _exit(130);
}

void Master::OnScale(int sig) {
  const int step = sig == SIGTTIN ? 1 : -1;
  if (state_.state() != MasterState::kServing) {
    LOG(WARNING) << strsignal(sig) << ": ignored while " << MasterStateName(state_.state())
                 << " (workers are scaled only while serving)";
    return;
  }
  for (const SharedSpec& spec : pool_->Served()) {
    const std::string& name = spec->config.name();
    const int workers = pool_->Readiness(name, spec->version).workers;
    if (workers + step < 1) {
      LOG(WARNING) << strsignal(sig) << ": model " << spec->key() << " keeps its one worker";
      continue;
    }
    if (absl::Status scaled = pool_->SetWorkers(name, workers + step, spec->version);
        !scaled.ok()) {
      LOG(WARNING) << strsignal(sig) << ": model " << spec->key() << " stays at " << workers
                   << " worker(s): " << scaled.message();
    }
  }
}

void Master::OnHup() {
  if (state_.state() != MasterState::kServing) {
    LOG(WARNING) << strsignal(SIGHUP) << ": ignored while " << MasterStateName(state_.state())
                 << " (the repository is reloaded only while serving)";
    return;
  }
  LOG(INFO) << strsignal(SIGHUP) << ": reloading the model repository "
            << options_.model_repository;
  reloader_->Request({ReloadRequest::Kind::kRepository, ""}, [](absl::Status) {});
}

void Master::OnUnsupported(int sig) {
  LOG(WARNING) << strsignal(sig) << ": not supported by this version; ignored";
}

}  // namespace

int RunMaster(const MasterOptions& options) { return Master(options).Run(); }

}  // namespace kiln
