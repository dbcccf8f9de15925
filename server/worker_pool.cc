#include "server/worker_pool.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <ctime>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/arena_tensors.h"
#include "common/clock.h"
#include "common/dtype.h"
#include "common/memory_budget.h"
#include "common/memory_probe.h"
#include "common/process.h"
#include "common/shape.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "glog/logging.h"
#include "server/device_choice.h"
#include "server/warmup_report_text.h"

namespace kiln {

// Workers of one model that die before ever becoming ready this many times in a row make the
// pool fatal (a crash loop is not something to retry forever).
constexpr int kMaxFailedStarts = 3;

struct WorkerPool::Worker {
  int id = 0;
  int slot = 0;
  ModelState* model = nullptr;
  pid_t pid = 0;
  WorkerState state = WorkerState::kSpawning;
  FrameChannel channel{-1};
  std::unique_ptr<SharedArena> arena;
  std::optional<InferJob> job;  // the job being served (state kBusy)
  uint64_t call_id = 0;  // the last call sent to it; the smallest among idle workers is the LRU
  double compute_timeout_ms = 0;  // ComputeTimeoutMs, from its warmup report once Ready
  int64_t call_deadline_ns = 0;   // CLOCK_MONOTONIC; past it the call is hung (state kBusy)
  bool retiring = false;         // scaled away: leaves after its call, and is not replaced
  internal::WarmupReport warmup;
};

struct WorkerPool::ModelState {
  SharedSpec spec;
  int generation = 1;  // of the zygote that forks its workers
  VersionPhase phase = VersionPhase::kLive;
  int workers = 0;  // target count
  int quorum = 0;
  int min_ready = 1;            // warm workers that keep it SERVING once it reached the quorum
  bool reached_quorum = false;  // since then, min_ready decides readiness
  int threads = 1;  // intra-op threads per worker
  uint64_t arena_bytes = 0;
  std::optional<JobQueue> queue;  // set in the constructor
  int failed_starts = 0;  // consecutive deaths before ready
  bool ever_ready = false;
  int64_t budget_bytes = 0;             // per worker; 0 = none
  std::vector<Shape> replay;            // recorded traffic shapes to warm
  std::set<int> missing_slots;          // exited workers not replaced yet (no memory room)
  // When the worker of a slot died, until its replacement is ready (the respawn's duration).
  std::map<int, std::chrono::steady_clock::time_point> died_at;
  ModelCounters counters;

  // The quorum (readiness.quorum: 0 is "all", an explicit one is capped) and min_ready for the
  // target count `workers`.
  void ResolveQuorum() {
    const ReadinessConfig& readiness = spec->config.readiness();
    quorum = readiness.quorum() > 0 ? std::min(readiness.quorum(), workers) : workers;
    min_ready = std::clamp(readiness.min_ready(), 1, quorum);
  }
};

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Start(FrameChannel zygote,
                                                              const std::vector<ModelSpec>& specs,
                                                              const WorkerPoolOptions& options) {
  std::unique_ptr<WorkerPool> pool(new WorkerPool(options));
  if (pool->wake_fd_ < 0) return absl::InternalError("eventfd failed");
  {
    absl::MutexLock lock(&pool->mu_);
    pool->generations_[1].zygote = std::move(zygote);
    for (const ModelSpec& spec : specs) {
      pool->AddModelLocked(spec, 1, VersionPhase::kLive, options.threads);
    }
    pool->ResolveBudgetsLocked();
    for (const auto& model : pool->models_) {
      for (int slot = 0; slot < model->workers; ++slot) {
        if (absl::Status spawned = pool->SpawnLocked(*model, slot); !spawned.ok()) return spawned;
      }
    }
  }
  pool->loop_ = std::thread([p = pool.get()] { p->Loop(); });
  return pool;
}

WorkerPool::WorkerPool(const WorkerPoolOptions& options)
    : options_(options), wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

WorkerPool::ModelState& WorkerPool::AddModelLocked(
    const ModelSpec& spec, int generation, VersionPhase phase,
    const std::map<std::string, ModelThreads>& threads) {
  auto model = std::make_unique<ModelState>();
  const ModelConfig& config = spec.config;
  model->spec = std::make_shared<const ModelSpec>(spec);
  model->generation = generation;
  model->phase = phase;
  const auto planned = threads.find(spec.key());
  const ModelThreads plan = planned != threads.end() ? planned->second : ModelThreads();
  model->workers = std::max(plan.workers, 1);
  model->threads = std::max(plan.intra_op_threads, 1);
  model->ResolveQuorum();
  model->arena_bytes = ArenaBytesFor(config);
  model->queue.emplace(config.dynamic_batching().max_queue_size());
  auto replay = options_.replay.find(config.name());
  if (replay != options_.replay.end()) model->replay = replay->second;
  models_.push_back(std::move(model));
  return *models_.back();
}

void WorkerPool::ResolveBudgetsLocked() {
  // A budget is a share of the limit among every worker wanted now; a version keeps the budget
  // its workers warmed under.
  int total_workers = 0;
  for (const auto& model : models_) total_workers += model->workers;
  for (const auto& model : models_) {
    const ModelConfig& config = model->spec->config;
    if (model->budget_bytes == 0 &&
        (options_.memory_limit.bytes > 0 || config.memory().limit_bytes() > 0)) {
      model->budget_bytes =
          WorkerBudgetBytes(config.memory(), options_.memory_limit.bytes, total_workers);
    }
  }
}

WorkerPool::ModelState* WorkerPool::FindLocked(const ModelSpec* spec) const {
  for (const auto& model : models_) {
    if (model->spec.get() == spec) return model.get();
  }
  return nullptr;
}

WorkerPool::~WorkerPool() {
  Stop();
  close(wake_fd_);
}

int64_t WorkerPool::ReservationBytesLocked(const ModelState& model, bool* measured) const {
  // Any version of the model will do: a version staged by a reload has measured nothing yet.
  int64_t peak = 0;
  for (const auto& [id, worker] : workers_) {
    if (worker->model->spec->config.name() == model.spec->config.name()) {
      peak = std::max(peak, worker->warmup.private_peak_bytes());
    }
  }
  if (measured != nullptr) *measured = peak > 0;
  return peak > 0 ? peak : model.budget_bytes;
}

absl::Status WorkerPool::CheckRoomLocked(const ModelState& model, int count) const {
  if (options_.memory_limit.bytes <= 0) return absl::OkStatus();
  absl::StatusOr<MemoryUsage> usage = options_.memory_usage
                                          ? options_.memory_usage()
                                          : ChargedMemory(options_.memory_limit, getpid());
  if (!usage.ok()) {
    LOG_EVERY_N(WARNING, 100) << "memory admission skipped: " << usage.status();
    return absl::OkStatus();
  }
  WorkerAdmission admission;
  admission.usage_bytes = usage->bytes;
  admission.usage_source = usage->source;
  for (const auto& [id, worker] : workers_) {
    if (worker->state == WorkerState::kSpawning || worker->state == WorkerState::kWarming) {
      admission.pending_bytes += ReservationBytesLocked(*worker->model);
      ++admission.pending_workers;
    }
  }
  admission.count = count;
  admission.per_worker_bytes = ReservationBytesLocked(model, &admission.measured);
  admission.headroom_bytes = model.spec->config.memory().headroom_bytes();
  return Annotate(
      CheckRoomForWorkers(admission, options_.memory_limit.bytes),
      absl::StrCat("no memory for ", count, " more worker(s) of '", model.spec->key(), "'"));
}

absl::Status WorkerPool::SpawnLocked(ModelState& model, int slot) {
  const ModelConfig& config = model.spec->config;
  FrameChannel& zygote = generations_[model.generation].zygote;
  if (zygote.fd() < 0) return absl::UnavailableError("no zygote to fork workers from");
  if (absl::Status room = CheckRoomLocked(model); !room.ok()) return room;
  auto worker = std::make_unique<Worker>();
  worker->id = next_worker_id_++;
  worker->slot = slot;
  worker->model = &model;
  ASSIGN_OR_RETURN(auto pair, FrameChannel::CreatePair());
  ASSIGN_OR_RETURN(
      worker->arena,
      SharedArena::Create(absl::StrCat(model.spec->key(), "-", worker->id), model.arena_bytes));

  internal::ZygoteCommand command;
  internal::SpawnWorker& spawn = *command.mutable_spawn();
  spawn.set_model(model.spec->key());
  spawn.set_worker_id(worker->id);
  spawn.set_intra_op_threads(model.threads);
  spawn.set_device_index(DeviceIndex(config.instance_group(), slot));
  spawn.set_warmup(options_.warmup && config.warmup().enabled());
  spawn.set_warm_at_idle_priority(spawn.warmup() && options_.warm_at_idle_priority);
  spawn.set_memory_budget_bytes(model.budget_bytes);
  for (const Shape& shape : model.replay) *spawn.add_replay() = ToProto(shape);
  // A template warms on one thread: a worker of more threads would settle every shape again after
  // the template's warmup, which costs more than warming by itself.
  spawn.set_from_template(options_.warm_template && spawn.warmup() && spawn.device_index() < 0 &&
                          model.threads == 1);
  spawn.set_cold_calls_for_test(options_.cold_calls_for_test);
  absl::Status sent = zygote.Send(command, {pair.second.fd(), worker->arena->fd()});
  // pair.second (the worker's end) closes here: only the worker holds it now, so its death
  // is an EOF on our end.
  if (!sent.ok()) return absl::UnavailableError(absl::StrCat("zygote: ", sent.message()));
  worker->channel = std::move(pair.first);
  VLOG(1) << "worker " << worker->id << " (" << model.spec->key() << " slot " << slot
          << "): spawning";
  workers_[worker->id] = std::move(worker);
  return absl::OkStatus();
}

void WorkerPool::SetStateLocked(Worker& worker, WorkerState next) {
  if (!WorkerTransitionAllowed(worker.state, next)) {
    LOG(DFATAL) << "worker " << worker.id << ": illegal transition "
                << WorkerStateName(worker.state) << " -> " << WorkerStateName(next);
    return;
  }
  worker.state = next;
}

absl::Status WorkerPool::Submit(InferJob job) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("server is shutting down");
    ModelState* model = job.spec == nullptr ? nullptr : FindLocked(job.spec.get());
    if (model == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "model version '", job.spec == nullptr ? "(none)" : job.spec->key(), "' is not served"));
    }
    if (model->phase == VersionPhase::kRetiring) {
      return absl::AbortedError(
          absl::StrCat("model version '", model->spec->key(), "' was replaced; route it again"));
    }
    const std::string name = model->spec->key();
    job.queued_ns = MonotonicNowNs();
    if (absl::Status queued = model->queue->Push(std::move(job)); !queued.ok()) {
      return Annotate(queued, absl::StrCat("model '", name, "'"));
    }
  }
  Wake();
  return absl::OkStatus();
}

void WorkerPool::Wake() {
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
}

int WorkerPool::WarmWorkersLocked(const ModelState& model) const {
  int warm = 0;
  for (const auto& [id, worker] : workers_) {
    warm += worker->model == &model &&
            (worker->state == WorkerState::kReady || worker->state == WorkerState::kBusy);
  }
  return warm;
}

std::vector<WorkerPool::ModelState*> WorkerPool::MatchLocked(const std::string& name,
                                                             int64_t version,
                                                             VersionPhase phase) const {
  std::vector<ModelState*> matched;
  for (const auto& model : models_) {
    if (model->phase == phase && model->spec->config.name() == name &&
        (version == kEveryVersion || model->spec->version == version)) {
      matched.push_back(model.get());
    }
  }
  return matched;
}

ModelReadiness WorkerPool::ReadinessLocked(const ModelState& model) const {
  ModelReadiness readiness;
  readiness.warm = WarmWorkersLocked(model);
  readiness.workers = model.workers;
  readiness.quorum = model.quorum;
  readiness.min_ready = model.min_ready;
  readiness.serving =
      !stopping_ && readiness.warm >= (model.reached_quorum ? model.min_ready : model.quorum);
  return readiness;
}

ModelReadiness WorkerPool::Readiness(const std::string& name, int64_t version) const {
  absl::MutexLock lock(&mu_);
  const std::vector<ModelState*> matched = MatchLocked(name, version);
  ModelReadiness sum;
  sum.serving = !matched.empty();
  for (const ModelState* model : matched) {
    const ModelReadiness one = ReadinessLocked(*model);
    sum.warm += one.warm;
    sum.workers += one.workers;
    sum.quorum += one.quorum;
    sum.min_ready += one.min_ready;
    sum.serving = sum.serving && one.serving;
  }
  return sum;
}

bool WorkerPool::ModelReady(const std::string& name, int64_t version) const {
  return Readiness(name, version).serving;
}

bool WorkerPool::AllModelsReady() const {
  absl::MutexLock lock(&mu_);
  return std::all_of(
      models_.begin(), models_.end(), [this](const auto& model) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return model->phase != VersionPhase::kLive || ReadinessLocked(*model).serving;
      });
}

absl::StatusOr<SharedSpec> WorkerPool::Route(const std::string& name, const std::string& version,
                                             bool staged) const {
  absl::MutexLock lock(&mu_);
  int64_t number = kEveryVersion;
  if (!version.empty() && (!absl::SimpleAtoi(version, &number) || number < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("model_version '", version, "' of model '", name,
                                                   "': expected a version number >= 1"));
  }
  const VersionPhase phase = staged ? VersionPhase::kStaged : VersionPhase::kLive;
  const std::vector<ModelState*> versions = MatchLocked(name, kEveryVersion, phase);
  if (versions.empty()) {
    std::set<std::string> names;
    for (const auto& model : models_) {
      if (model->phase == phase) names.insert(model->spec->config.name());
    }
    return absl::NotFoundError(absl::StrCat("unknown model '", name,
                                            "'; this server serves: ", absl::StrJoin(names, ", ")));
  }
  const ModelState* newest = nullptr;
  const ModelState* newest_ready = nullptr;
  for (const ModelState* model : versions) {
    if (number != kEveryVersion && model->spec->version == number) return model->spec;
    if (newest == nullptr || model->spec->version > newest->spec->version) newest = model;
    if (ReadinessLocked(*model).serving &&
        (newest_ready == nullptr || model->spec->version > newest_ready->spec->version)) {
      newest_ready = model;
    }
  }
  if (number == kEveryVersion) return (newest_ready != nullptr ? newest_ready : newest)->spec;
  std::vector<int64_t> served;
  for (const ModelState* model : versions) served.push_back(model->spec->version);
  std::sort(served.begin(), served.end());
  return absl::NotFoundError(absl::StrCat("model '", name, "' has no version ", number,
                                          " served; it serves version(s) ",
                                          absl::StrJoin(served, ", ")));
}

std::vector<SharedSpec> WorkerPool::Served(bool staged) const {
  absl::MutexLock lock(&mu_);
  const VersionPhase phase = staged ? VersionPhase::kStaged : VersionPhase::kLive;
  std::vector<SharedSpec> specs;
  for (const auto& model : models_) {
    if (model->phase == phase) specs.push_back(model->spec);
  }
  std::sort(specs.begin(), specs.end(), [](const SharedSpec& a, const SharedSpec& b) {
    return std::make_pair(a->config.name(), a->version) <
           std::make_pair(b->config.name(), b->version);
  });
  return specs;
}

absl::Status WorkerPool::fatal_error() const {
  absl::MutexLock lock(&mu_);
  return fatal_;
}

ModelCounters WorkerPool::Counters(const std::string& name, int64_t version) const {
  absl::MutexLock lock(&mu_);
  ModelCounters sum;
  for (const ModelState* model : MatchLocked(name, version)) {
    const ModelCounters& one = model->counters;
    sum.requests += one.requests;
    sum.cold_shape_hits += one.cold_shape_hits;
    sum.padded_to_bucket += one.padded_to_bucket;
    sum.split += one.split;
    sum.over_budget += one.over_budget;
    sum.padded_batch += one.padded_batch;
  }
  return sum;
}

void WorkerPool::ResetCounters() {
  absl::MutexLock lock(&mu_);
  for (const auto& model : models_) model->counters = ModelCounters();
}

void WorkerPool::StartServing() {
  std::vector<Completion> done;
  {
    absl::MutexLock lock(&mu_);
    if (serving_ || stopping_) return;
    serving_ = true;
    for (auto& [id, worker] : workers_) {
      if (worker->model->phase != VersionPhase::kStaged &&
          (worker->state == WorkerState::kReady || worker->state == WorkerState::kBusy)) {
        PromoteLocked(*worker, done);
      }
    }
  }
  Wake();  // a worker whose Promote could not be sent is gone: let the loop replace it
  for (Completion& completion : done) completion.done(std::move(completion.outcome));
}

void WorkerPool::PromoteLocked(Worker& worker, std::vector<Completion>& done) {
  if (!options_.warm_at_idle_priority) return;
  internal::ToWorker frame;
  frame.mutable_promote();
  if (absl::Status sent = worker.channel.Send(frame); !sent.ok()) {
    WorkerGoneLocked(worker, absl::StrCat("sending Promote failed (", sent.message(), ")"), done);
  }
}

int64_t WorkerPool::BudgetBytes(const std::string& name, int64_t version) const {
  absl::MutexLock lock(&mu_);
  int64_t budget = 0;
  for (const ModelState* model : MatchLocked(name, version)) {
    budget = std::max(budget, model->budget_bytes);
  }
  return budget;
}

std::vector<WorkerInfo> WorkerPool::Workers() const {
  absl::MutexLock lock(&mu_);
  std::vector<WorkerInfo> infos;
  for (const auto& [id, worker] : workers_) {
    const ModelState& model = *worker->model;
    infos.push_back({worker->id, model.spec->config.name(), model.spec->version, model.spec,
                     model.generation, worker->pid, worker->state, worker->slot, worker->warmup});
  }
  return infos;
}

std::vector<VersionState> WorkerPool::VersionStates() const {
  absl::MutexLock lock(&mu_);
  std::vector<VersionState> states;
  std::map<const ModelState*, size_t> index;
  for (const auto& model : models_) {
    index[model.get()] = states.size();
    VersionState& state = states.emplace_back();
    state.spec = model->spec;
    state.phase = model->phase;
    state.readiness = ReadinessLocked(*model);
    state.queued = model->queue->size();
    state.budget_bytes = model->budget_bytes;
  }
  for (const auto& [id, worker] : workers_) {
    if (worker->state != WorkerState::kExited) ++states[index[worker->model]].workers[worker->state];
  }
  return states;
}

void WorkerPool::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  Wake();
  if (loop_.joinable()) loop_.join();
}

int WorkerPool::PollTimeoutMsLocked() const {
  int64_t nearest = 0;
  for (const auto& model : models_) {
    const int64_t deadline = model->queue->NearestDeadlineNs();
    if (deadline != 0 && (nearest == 0 || deadline < nearest)) nearest = deadline;
  }
  for (const auto& [id, worker] : workers_) {
    if (worker->state == WorkerState::kBusy &&
        (nearest == 0 || worker->call_deadline_ns < nearest)) {
      nearest = worker->call_deadline_ns;
    }
  }
  if (nearest == 0) return 1000;
  const int64_t ms = (nearest - MonotonicNowNs()) / 1'000'000 + 1;
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 1000));
}

void WorkerPool::ForgetExitedLocked() {
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->second->state != WorkerState::kExited) {
      ++it;
      continue;
    }
    if (!it->second->retiring) {
      ModelState& model = *it->second->model;
      model.missing_slots.insert(it->second->slot);
      model.died_at.emplace(it->second->slot, std::chrono::steady_clock::now());
      if (options_.on_worker_died) options_.on_worker_died(*model.spec);
    }
    it = workers_.erase(it);
  }
}

void WorkerPool::Loop() {
  while (true) {
    std::vector<pollfd> fds;
    std::vector<int> generations;  // generation of fds[i + 1]
    std::vector<int> ids;          // worker id of fds[i + 1 + generations.size()]
    int timeout_ms;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      fds.push_back({wake_fd_, POLLIN, 0});
      for (const auto& [number, generation] : generations_) {
        fds.push_back({generation.zygote.fd(), POLLIN, 0});
        generations.push_back(number);
      }
      for (const auto& [id, worker] : workers_) {
        if (worker->state == WorkerState::kExited) continue;
        fds.push_back({worker->channel.fd(), POLLIN, 0});
        ids.push_back(id);
      }
      timeout_ms = PollTimeoutMsLocked();
    }
    if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
      PLOG(ERROR) << "worker pool: poll";
    }
    std::vector<Completion> done;
    {
      absl::MutexLock lock(&mu_);
      if (fds[0].revents & POLLIN) {
        uint64_t count;
        (void)!read(wake_fd_, &count, sizeof(count));
      }
      for (size_t i = 0; i < generations.size(); ++i) {
        if (fds[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) HandleZygoteLocked(generations[i]);
      }
      const size_t first_worker = 1 + generations.size();
      for (size_t i = 0; i < ids.size(); ++i) {
        auto it = workers_.find(ids[i]);
        if (it != workers_.end() &&
            (fds[first_worker + i].revents & (POLLIN | POLLHUP | POLLERR))) {
          HandleWorkerLocked(*it->second, done);
        }
      }
      // Replace the workers that exited (not while stopping, not after a fatal error, not those
      // of a retiring version or of a failed staging). Without memory room for a replacement,
      // its slot waits and is retried on every turn.
      ForgetExitedLocked();
      if (fatal_.ok() && !stopping_) {
        for (const auto& model : models_) {
          if (model->phase == VersionPhase::kRetiring ||
              (model->phase == VersionPhase::kStaged && !staging_failed_.ok())) {
            continue;
          }
          for (auto slot = model->missing_slots.begin(); slot != model->missing_slots.end();) {
            absl::Status spawned = SpawnLocked(*model, *slot);
            if (spawned.ok()) {
              slot = model->missing_slots.erase(slot);
            } else if (absl::IsResourceExhausted(spawned) || absl::IsUnavailable(spawned)) {
              LOG_EVERY_N(WARNING, 100) << "worker respawn waits: " << spawned.message();
              break;
            } else if (model->phase == VersionPhase::kStaged) {
              StagingFailedLocked(spawned);
              break;
            } else {
              fatal_ = spawned;
              break;
            }
          }
        }
      }
      ExpireLocked(done);
      StopHungLocked(done);
      DrainRetiringLocked(done);
      if (!fatal_.ok() && !fatal_told_ && options_.on_change) {
        fatal_told_ = true;
        options_.on_change();
      }
      for (const auto& model : models_) DispatchLocked(*model, done);
    }
    for (Completion& completion : done) completion.done(std::move(completion.outcome));
  }

  // Stopping: fail what is left, close every channel (workers and then the zygotes exit).
  std::vector<Completion> done;
  {
    absl::MutexLock lock(&mu_);
    const absl::Status stopped = absl::UnavailableError("server is shutting down");
    for (const auto& model : models_) {
      for (InferJob& job : model->queue->TakeAll()) done.emplace_back(std::move(job.done), stopped);
    }
    for (auto& [id, worker] : workers_) {
      if (worker->job.has_value()) done.emplace_back(std::move(worker->job->done), stopped);
      worker->job.reset();
      worker->channel.Close();
    }
    workers_.clear();
    for (auto& [number, generation] : generations_) generation.zygote.Close();
  }
  for (Completion& completion : done) completion.done(std::move(completion.outcome));
}

bool WorkerPool::ZygoteHasEventLocked(int generation) const {
  auto it = generations_.find(generation);
  if (it == generations_.end() || it->second.zygote.fd() < 0) return false;
  pollfd fd{it->second.zygote.fd(), POLLIN, 0};
  return poll(&fd, 1, 0) > 0 && (fd.revents & (POLLIN | POLLHUP | POLLERR));
}

void WorkerPool::HandleZygoteLocked(int generation) {
  FrameChannel& zygote = generations_[generation].zygote;
  internal::ZygoteEvent event;
  absl::Status received = zygote.Receive(&event);
  if (absl::IsDeadlineExceeded(received)) return;
  if (!received.ok()) {
    ZygoteLostLocked(generation, received);
    return;
  }
  if (event.has_started()) {
    auto it = workers_.find(event.started().worker_id());
    if (it == workers_.end()) return;
    it->second->pid = event.started().pid();
    if (it->second->state == WorkerState::kSpawning)
      SetStateLocked(*it->second, WorkerState::kWarming);
    LOG(INFO) << "worker " << it->first << " (" << it->second->model->spec->key()
              << "): forked as pid " << it->second->pid << ", warming";
  } else if (event.has_exited()) {
    const internal::WorkerExited& exited = event.exited();
    LOG(INFO) << "worker " << exited.worker_id() << " (pid " << exited.pid() << ") exited"
              << (exited.signal() != 0 ? absl::StrCat(" by signal ", exited.signal())
                                       : absl::StrCat(" with code ", exited.exit_code()));
  } else if (event.has_load_failed()) {
    // Only a zygote started by fork+exec loads by itself: a reload's, or a replacement.
    LOG(WARNING) << "the zygote of generation " << generation
                 << " could not load: " << event.load_failed().message();
    if (generation == staging_generation_) {
      StagingFailedLocked(absl::FailedPreconditionError(event.load_failed().message()));
    }
  }
}

void WorkerPool::StagingFailedLocked(const absl::Status& why) {
  if (staging_generation_ == 0 || !staging_failed_.ok()) return;
  staging_failed_ = why;
  LOG(WARNING) << "reload: generation " << staging_generation_ << " failed: " << why.message();
  if (options_.on_change) options_.on_change();
}

void WorkerPool::ZygoteLostLocked(int generation, const absl::Status& why) {
  Generation& lost = generations_[generation];
  lost.zygote.Close();
  for (auto& [id, worker] : workers_) {
    // Never forked (no `started`): nothing will answer on its channel. Not the model's failure.
    if (worker->model->generation == generation && worker->state == WorkerState::kSpawning &&
        worker->pid == 0) {
      worker->channel.Close();
      SetStateLocked(*worker, WorkerState::kExited);
    }
  }
  if (generation == staging_generation_) {
    StagingFailedLocked(absl::UnavailableError(
        absl::StrCat("its zygote exited before its workers were warm (", why.message(), ")")));
    return;
  }
  if (!fatal_.ok() || stopping_) return;
  const auto now = std::chrono::steady_clock::now();
  while (!lost.deaths.empty() && now - lost.deaths.front() > kZygoteRestartWindow) {
    lost.deaths.pop_front();
  }
  lost.deaths.push_back(now);
  if (!options_.restart_zygote) {
    fatal_ = absl::UnavailableError(absl::StrCat("the zygote is gone (", why.message(),
                                                 "); workers can no longer be replaced"));
  } else if (static_cast<int>(lost.deaths.size()) > kMaxZygoteRestarts) {
    fatal_ = absl::UnavailableError(absl::StrCat(
        "the zygote died ", lost.deaths.size(), " times within ", kZygoteRestartWindow.count(),
        " s (a crash loop; the last: ", why.message(), ")"));
  } else {
    LOG(WARNING) << "the zygote of generation " << generation << " is gone (" << why.message()
                 << "); starting a new one";
    std::vector<std::string> keys;
    for (const auto& model : models_) {
      if (model->generation == generation && model->phase != VersionPhase::kRetiring) {
        keys.push_back(model->spec->key());
      }
    }
    absl::StatusOr<FrameChannel> restarted = options_.restart_zygote(generation, keys);
    if (restarted.ok()) {
      lost.zygote = *std::move(restarted);
      return;
    }
    fatal_ = Annotate(restarted.status(), "the zygote is gone and a new one cannot start");
  }
  LOG(ERROR) << fatal_;
}

void WorkerPool::HandleWorkerLocked(Worker& worker, std::vector<Completion>& done) {
  internal::FromWorker frame;
  absl::Status received = worker.channel.Receive(&frame);
  if (absl::IsDeadlineExceeded(received)) return;
  if (!received.ok()) {
    WorkerGoneLocked(worker, absl::StrCat("its channel closed (", received.message(), ")"), done);
    return;
  }
  // The zygote's `started` for this worker can still be unread when the worker's first frame
  // comes in the same poll round (a worker that is ready at once, a master thread that fell
  // behind): take the zygote's events first.
  ModelState& model = *worker.model;
  while (worker.state == WorkerState::kSpawning && ZygoteHasEventLocked(model.generation)) {
    HandleZygoteLocked(model.generation);
  }
  const std::string name = model.spec->key();
  if (frame.has_ready() && worker.state == WorkerState::kWarming) {
    worker.warmup = frame.ready();
    worker.compute_timeout_ms = ComputeTimeoutMs(model.spec->config, worker.warmup);
    SetStateLocked(worker, WorkerState::kReady);
    model.failed_starts = 0;
    model.ever_ready = true;
    model.reached_quorum = model.reached_quorum || WarmWorkersLocked(model) >= model.quorum;
    if (auto died = model.died_at.find(worker.slot); died != model.died_at.end()) {
      if (options_.on_worker_respawned) {
        options_.on_worker_respawned(
            *model.spec,
            std::chrono::duration<double>(std::chrono::steady_clock::now() - died->second).count());
      }
      model.died_at.erase(died);
    }
    LOG(INFO) << "worker " << worker.id << " (" << name << ", pid " << worker.pid
              << "): " << DescribeWarmupReport(worker.warmup);
    // Before any call is dispatched to it; a staged worker stays idle until its version is Live.
    if (serving_ && model.phase != VersionPhase::kStaged) PromoteLocked(worker, done);
    if (options_.on_change) options_.on_change();
  } else if (frame.has_result() && worker.state == WorkerState::kBusy &&
             frame.result().call_id() == worker.call_id) {
    const internal::InferResult& result = frame.result();
    CountLocked(model, result);
    InferOutcome outcome;
    const int64_t received_ns = MonotonicNowNs();
    outcome.outputs =
        result.code() == 0
            ? CopyFromArena(result.outputs(), *worker.arena)
            : absl::Status(static_cast<absl::StatusCode>(result.code()), result.message());
    outcome.output_ms = (MonotonicNowNs() - received_ns) / 1e6;
    if (result.has_ran_as()) {
      outcome.ran_as = FromProto(result.ran_as());
      outcome.executions = std::max(result.chunks(), 1);
      outcome.padded_rows = result.padded_rows();
      outcome.padded_length = result.unpadded_length() > 0 &&
                              result.unpadded_length() < result.ran_as().sequence_length();
    }
    outcome.compute_ms = result.compute_ms();
    outcome.compute_cpu_ms = result.compute_cpu_ms();
    outcome.cold_shape = result.cold_shape();
    outcome.worker_pid = worker.pid;
    outcome.queue_ms = (worker.job->sent_ns - worker.job->queued_ns) / 1e6;
    outcome.input_ms = worker.job->input_ms;
    if (worker.job->text != nullptr) outcome.tokenize_ms = result.tokenize_ms();
    done.emplace_back(std::move(worker.job->done), std::move(outcome));
    worker.job.reset();
    SetStateLocked(worker, WorkerState::kReady);
    if (worker.retiring) {  // scaled away (or its version replaced) while busy: its call is done
      RetireLocked(worker, model.phase == VersionPhase::kRetiring ? "its version was replaced"
                                                                  : "scaled down");
    }
  } else if (frame.has_failed()) {
    // Before the model ever served, a failure is the model's or the config's (warmup cannot
    // run): stop (a staged version: its reload fails). Later, replace the worker; a crash loop
    // still ends in kMaxFailedStarts.
    if (model.phase == VersionPhase::kStaged) {
      StagingFailedLocked(absl::FailedPreconditionError(absl::StrCat(
          "worker ", worker.id, " of model '", name, "' failed: ", frame.failed().message())));
    } else if (!model.ever_ready && fatal_.ok()) {
      fatal_ = absl::FailedPreconditionError(absl::StrCat("worker ", worker.id, " of model '", name,
                                                          "' failed: ", frame.failed().message()));
      LOG(ERROR) << fatal_;
    }
    WorkerGoneLocked(worker, "it failed", done);
  } else {
    // A frame that does not fit the protocol: never leave a call hanging on it. The worker is
    // killed and replaced; its call (if any) ends UNAVAILABLE.
    LOG(ERROR) << "worker " << worker.id << ": unexpected frame in state "
               << WorkerStateName(worker.state) << ": " << frame.ShortDebugString();
    if (worker.pid > 0) kill(worker.pid, SIGKILL);
    WorkerGoneLocked(worker, "it broke the protocol", done);
  }
}

void WorkerPool::CountLocked(ModelState& model, const internal::InferResult& result) {
  ModelCounters& counters = model.counters;
  ++counters.requests;
  if (!result.has_ran_as()) {  // refused before running
    counters.over_budget += result.code() == static_cast<int>(absl::StatusCode::kResourceExhausted);
    return;
  }
  counters.cold_shape_hits += result.cold_shape();
  counters.padded_to_bucket +=
      result.unpadded_length() > 0 && result.unpadded_length() < result.ran_as().sequence_length();
  counters.split += result.chunks() > 1;
  counters.padded_batch += result.padded_rows() > 0;
}

void WorkerPool::WorkerGoneLocked(Worker& worker, const std::string& why,
                                  std::vector<Completion>& done, absl::Status job_error) {
  ModelState& model = *worker.model;
  LOG(WARNING) << "worker " << worker.id << " (" << model.spec->key() << ", pid " << worker.pid
               << ", " << WorkerStateName(worker.state) << ") is gone: " << why;
  if (worker.job.has_value()) {
    if (job_error.ok()) {
      job_error =
          absl::UnavailableError(absl::StrCat("worker ", worker.id, " (pid ", worker.pid,
                                              ") died while serving this request; retry it"));
    }
    done.emplace_back(std::move(worker.job->done), std::move(job_error));
    worker.job.reset();
  }
  if (worker.state == WorkerState::kSpawning || worker.state == WorkerState::kWarming) {
    if (++model.failed_starts >= kMaxFailedStarts) {
      const absl::Status crash_loop = absl::UnavailableError(
          absl::StrCat("workers of model '", model.spec->key(), "' died ", model.failed_starts,
                       " times in a row before becoming ready"));
      if (model.phase == VersionPhase::kStaged) {
        StagingFailedLocked(crash_loop);
      } else if (fatal_.ok()) {
        fatal_ = crash_loop;
        LOG(ERROR) << fatal_;
      }
    }
  }
  worker.channel.Close();
  SetStateLocked(worker, WorkerState::kExited);
}

absl::Status WorkerPool::SetWorkers(const std::string& name, int count, int64_t version) {
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("server is shutting down");
    const std::vector<ModelState*> matched = MatchLocked(name, version);
    if (matched.empty()) {
      return absl::NotFoundError(
          version == kEveryVersion
              ? absl::StrCat("unknown model '", name, "'")
              : absl::StrCat("model '", name, "' has no version ", version, " served"));
    }
    if (count < 1 || count > kMaxWorkersPerModel) {
      return absl::InvalidArgumentError(absl::StrCat("model '", name, "': a worker count in [1, ",
                                                     kMaxWorkersPerModel, "], got ", count));
    }
    for (ModelState* model : matched) {
      if (absl::Status set = SetWorkersLocked(*model, count); !set.ok() && result.ok()) {
        result = set;
      }
    }
  }
  Wake();
  return result;
}

absl::Status WorkerPool::SetWorkersLocked(ModelState& model, int count) {
  absl::Status result;
  if (count > model.workers) {
    // All the new workers must fit, or none is started.
    RETURN_IF_ERROR(CheckRoomLocked(model, count - model.workers));
    while (model.workers < count && result.ok()) {
      result = SpawnLocked(model, model.workers);
      if (result.ok()) ++model.workers;
    }
  } else if (count < model.workers) {
    for (auto& [id, worker] : workers_) {
      if (worker->model != &model || worker->slot < count || worker->retiring ||
          worker->state == WorkerState::kExited) {
        continue;
      }
      worker->retiring = true;
      if (worker->state != WorkerState::kBusy) RetireLocked(*worker);
    }
    model.missing_slots.erase(model.missing_slots.lower_bound(count), model.missing_slots.end());
    model.died_at.erase(model.died_at.lower_bound(count), model.died_at.end());
    model.workers = count;
  }
  model.ResolveQuorum();
  LOG(INFO) << "model " << model.spec->key() << ": " << model.workers << " worker(s) wanted";
  return result;
}

absl::Status WorkerPool::Stage(FrameChannel zygote, int generation,
                               const std::vector<ModelSpec>& specs,
                               const std::map<std::string, ModelThreads>& threads) {
  absl::Status spawned;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("server is shutting down");
    if (staging_generation_ != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("generation ", staging_generation_, " is still being staged"));
    }
    if (generations_.count(generation) > 0) {
      return absl::InvalidArgumentError(absl::StrCat("generation ", generation, " exists"));
    }
    generations_[generation].zygote = std::move(zygote);
    staging_generation_ = generation;
    staging_failed_ = absl::OkStatus();
    std::vector<ModelState*> staged;
    for (const ModelSpec& spec : specs) {
      staged.push_back(&AddModelLocked(spec, generation, VersionPhase::kStaged, threads));
    }
    ResolveBudgetsLocked();
    // Both generations must fit while they overlap: every staged worker is admitted (its
    // reservation counted for the next one) or the staging is refused.
    for (ModelState* model : staged) {
      for (int slot = 0; slot < model->workers && spawned.ok(); ++slot) {
        spawned = SpawnLocked(*model, slot);
      }
    }
    if (spawned.ok()) {
      LOG(INFO) << "reload: generation " << generation << " stages " << specs.size()
                << " model version(s)";
    } else {
      staging_failed_ = spawned;
    }
  }
  Wake();
  // Only what failed here: a failure the loop finds later (its workers dying, say, which may
  // happen before this line) is the staging's, for StagingState to report.
  if (!spawned.ok()) {
    Abort();
    return spawned;
  }
  return absl::OkStatus();
}

WorkerPool::Staging WorkerPool::StagingState() const {
  absl::MutexLock lock(&mu_);
  Staging staging;
  staging.staging = staging_generation_ != 0;
  staging.failed = staging_failed_;
  staging.ready = staging.staging && staging_failed_.ok();
  std::vector<std::string> parts;
  for (const auto& model : models_) {
    if (model->phase != VersionPhase::kStaged) continue;
    const ModelReadiness readiness = ReadinessLocked(*model);
    staging.ready = staging.ready && readiness.serving;
    parts.push_back(
        absl::StrCat(model->spec->key(), " ", readiness.warm, "/", readiness.workers, " warm"));
  }
  staging.summary = absl::StrJoin(parts, ", ");
  return staging;
}

void WorkerPool::Commit(const std::vector<SharedSpec>& retire) {
  std::vector<Completion> done;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& model : models_) {
      if (model->phase == VersionPhase::kStaged) {
        model->phase = VersionPhase::kLive;
        model->counters = ModelCounters();  // the readiness check's requests are not serving
        LOG(INFO) << "reload: " << model->spec->key() << " (generation " << model->generation
                  << ") is live";
      }
    }
    for (const SharedSpec& spec : retire) {
      ModelState* model = FindLocked(spec.get());
      if (model == nullptr || model->phase != VersionPhase::kLive) continue;
      model->phase = VersionPhase::kRetiring;
      model->missing_slots.clear();
      LOG(INFO) << "reload: " << model->spec->key() << " (generation " << model->generation
                << ") is retiring: it finishes its calls, then its workers leave";
    }
    for (auto& [id, worker] : workers_) {
      if (worker->model->generation == staging_generation_ &&
          (worker->state == WorkerState::kReady || worker->state == WorkerState::kBusy)) {
        PromoteLocked(*worker, done);
      }
    }
    staging_generation_ = 0;
    staging_failed_ = absl::OkStatus();
  }
  Wake();
  for (Completion& completion : done) completion.done(std::move(completion.outcome));
}

void WorkerPool::Abort() {
  std::vector<Completion> done;
  {
    absl::MutexLock lock(&mu_);
    if (staging_generation_ == 0) return;
    for (auto& [id, worker] : workers_) {
      if (worker->model->phase != VersionPhase::kStaged || worker->state == WorkerState::kExited) {
        continue;
      }
      // Retired, not gone: no failed start is counted (WorkerGoneLocked would) and no
      // replacement made.
      if (worker->job.has_value()) {
        done.emplace_back(std::move(worker->job->done),
                          absl::UnavailableError("the version was abandoned by its reload"));
        worker->job.reset();
      }
      worker->retiring = true;
      RetireLocked(*worker, "its reload was abandoned");
    }
    ForgetExitedLocked();
    for (const auto& model : models_) {
      if (model->phase != VersionPhase::kStaged) continue;
      for (InferJob& job : model->queue->TakeAll()) {
        done.emplace_back(std::move(job.done),
                          absl::UnavailableError("the version was abandoned by its reload"));
      }
    }
    models_.erase(
        std::remove_if(models_.begin(), models_.end(),
                       [](const auto& model) { return model->phase == VersionPhase::kStaged; }),
        models_.end());
    LOG(WARNING) << "reload: generation " << staging_generation_ << " abandoned";
    staging_generation_ = 0;
    CloseUnusedGenerationsLocked();
  }
  Wake();
  for (Completion& completion : done) completion.done(std::move(completion.outcome));
}

std::vector<int> WorkerPool::Generations() const {
  absl::MutexLock lock(&mu_);
  std::vector<int> numbers;
  for (const auto& [number, generation] : generations_) numbers.push_back(number);
  return numbers;
}

void WorkerPool::CloseUnusedGenerationsLocked() {
  for (auto it = generations_.begin(); it != generations_.end();) {
    const int number = it->first;
    const bool used = number == staging_generation_ ||
                      std::any_of(models_.begin(), models_.end(), [number](const auto& model) {
                        return model->generation == number;
                      });
    if (used) {
      ++it;
      continue;
    }
    LOG(INFO) << "reload: generation " << number << " serves nothing any more; its zygote leaves";
    it->second.zygote.Close();  // the zygote exits on EOF
    it = generations_.erase(it);
  }
}

void WorkerPool::DrainRetiringLocked(std::vector<Completion>& done) {
  bool dropped = false;
  for (auto it = models_.begin(); it != models_.end();) {
    ModelState& model = **it;
    if (model.phase != VersionPhase::kRetiring) {
      ++it;
      continue;
    }
    bool working = false;  // a worker still has a call, or calls are still queued for one
    for (auto& [id, worker] : workers_) {
      if (worker->model != &model || worker->state == WorkerState::kExited) continue;
      if (worker->state == WorkerState::kBusy) {
        working = true;
        if (model.queue->empty()) worker->retiring = true;  // leaves after its call
      } else if (model.queue->empty() || worker->state != WorkerState::kReady) {
        worker->retiring = true;
        RetireLocked(*worker, "its version was replaced");
      } else {
        working = true;  // Ready, with queued calls to take
      }
    }
    if (working) {
      ++it;
      continue;
    }
    // No worker left to serve what is still queued (they died): those calls cannot run.
    for (InferJob& job : model.queue->TakeAll()) {
      done.emplace_back(std::move(job.done),
                        absl::UnavailableError(absl::StrCat(
                            "model version '", model.spec->key(),
                            "' was replaced and its workers are gone; retry the request")));
    }
    for (auto worker = workers_.begin(); worker != workers_.end();) {
      worker = worker->second->model == &model ? workers_.erase(worker) : std::next(worker);
    }
    LOG(INFO) << "reload: " << model.spec->key() << " (generation " << model.generation
              << ") retired";
    // Its zygote may serve other versions on: its template (and that memory) goes now.
    if (auto generation = generations_.find(model.generation);
        generation != generations_.end() && generation->second.zygote.fd() >= 0) {
      internal::ZygoteCommand drop;
      drop.mutable_drop_template()->set_model(model.spec->key());
      (void)generation->second.zygote.Send(drop);
    }
    it = models_.erase(it);
    dropped = true;
  }
  if (dropped) CloseUnusedGenerationsLocked();
}

void WorkerPool::RetireLocked(Worker& worker, const char* why) {
  LOG(INFO) << "worker " << worker.id << " (" << worker.model->spec->key() << ", pid " << worker.pid
            << "): retired (" << why << ")";
  // A warming worker reads its channel only once warm: stop its warmup now rather than let it
  // take CPU from the workers that serve.
  if (worker.pid > 0 &&
      (worker.state == WorkerState::kSpawning || worker.state == WorkerState::kWarming)) {
    kill(worker.pid, SIGKILL);
  }
  worker.channel.Close();  // it exits on EOF
  SetStateLocked(worker, WorkerState::kExited);
}

void WorkerPool::StopHungLocked(std::vector<Completion>& done) {
  const int64_t now = MonotonicNowNs();
  for (auto& [id, worker] : workers_) {
    if (worker->state != WorkerState::kBusy || now < worker->call_deadline_ns) continue;
    const double timeout_ms = worker->compute_timeout_ms;
    // Killed, not asked: a hung or stopped worker answers nothing. Its EOF then finds an
    // Exited worker, and the zygote's `exited` event is only logged.
    if (worker->pid > 0) kill(worker->pid, SIGKILL);
    WorkerGoneLocked(
        *worker,
        absl::StrFormat("its call ran past the compute timeout (%.0f ms); killed", timeout_ms),
        done,
        absl::UnavailableError(absl::StrFormat(
            "worker %d (pid %d) was still computing this request after the compute timeout of "
            "%.0f ms (supervision.compute_timeout_ms); it was killed and is being replaced; "
            "retry it",
            worker->id, worker->pid, timeout_ms)));
  }
}

void WorkerPool::ExpireLocked(std::vector<Completion>& done) {
  const int64_t now = MonotonicNowNs();
  for (const auto& model : models_) {
    for (InferJob& job : model->queue->TakeExpired(now)) {
      done.emplace_back(std::move(job.done),
                        absl::DeadlineExceededError("deadline expired while queued; not run"));
    }
  }
}

void WorkerPool::DispatchLocked(ModelState& model, std::vector<Completion>& done) {
  while (!model.queue->empty()) {
    // Least loaded: an idle worker (each serves one call at a time); among those, the one idle
    // the longest, so every worker keeps serving and stays warm.
    Worker* idle = nullptr;
    for (auto& [id, worker] : workers_) {
      if (worker->model == &model && worker->state == WorkerState::kReady &&
          (idle == nullptr || worker->call_id < idle->call_id)) {
        idle = worker.get();
      }
    }
    if (idle == nullptr) return;
    InferJob job = model.queue->Pop();
    job.sent_ns = MonotonicNowNs();

    internal::ToWorker frame;
    internal::InferCall& call = *frame.mutable_infer();
    call.set_call_id(next_call_id_++);
    call.set_deadline_monotonic_ns(job.deadline_monotonic_ns);
    absl::StatusOr<uint64_t> output_offset =
        job.text != nullptr ? WriteTextToArena(model.spec->config.tokenizer().text_input(),
                                               *job.text, 0, *idle->arena, *call.mutable_text())
                            : WriteToArena(job.inputs, 0, *idle->arena, *call.mutable_inputs());
    if (!output_offset.ok()) {
      done.emplace_back(std::move(job.done), output_offset.status());
      continue;
    }
    call.set_output_offset(*output_offset);
    job.input_ms = (MonotonicNowNs() - job.sent_ns) / 1e6;
    idle->call_id = call.call_id();
    idle->call_deadline_ns =
        MonotonicNowNs() + static_cast<int64_t>(idle->compute_timeout_ms * 1e6);
    idle->job = std::move(job);
    SetStateLocked(*idle, WorkerState::kBusy);
    if (absl::Status sent = idle->channel.Send(frame); !sent.ok()) {
      WorkerGoneLocked(*idle, absl::StrCat("sending a call failed (", sent.message(), ")"), done);
    }
  }
}

}  // namespace kiln
