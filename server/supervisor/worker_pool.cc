#include "server/supervisor/worker_pool.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
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
#include "server/supervisor/batch_plan.h"
#include "server/supervisor/device_choice.h"
#include "server/supervisor/warmup_report_text.h"

namespace kiln {

// Workers of one model that die before ever becoming ready this many times in a row make the
// pool fatal (a crash loop is not something to retry forever).
constexpr int kMaxFailedStarts = 3;

struct WorkerPool::Worker {
  int id = 0;
  int slot = 0;
  ServedVersion* model = nullptr;
  pid_t pid = 0;
  WorkerState state = WorkerState::kSpawning;
  FrameChannel channel{-1};
  std::unique_ptr<SharedArena> arena;
  // The jobs its call serves (state kBusy): one, or a batch (server/supervisor/batch_plan.h),
  // their rows in this order.
  std::vector<InferJob> jobs;
  uint64_t call_id = 0;  // the last call sent to it; the smallest among idle workers is the LRU
  double compute_timeout_ms = 0;  // ComputeTimeoutMs, from its warmup report once Ready
  int64_t call_deadline_ns = 0;   // CLOCK_MONOTONIC; past it the call is hung (state kBusy)
  bool retiring = false;          // scaled away: leaves after its call, and is not replaced
  bool upper_half = false;        // the half of its arena its next call uses (they alternate)
  internal::WarmupReport warmup;
  WarmedCosts costs;  // what its warmed passes cost, from `warmup`, for the batch plan
  // Its start (WorkerPoolOptions::on_worker_ready): why, when the zygote was asked, when it forked.
  WorkerStart cause = WorkerStart::kStart;
  std::chrono::steady_clock::time_point spawned_at;
  std::chrono::steady_clock::time_point forked_at;
};

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Start(ZygoteProcess zygote,
                                                              const std::vector<ModelSpec>& specs,
                                                              const WorkerPoolOptions& options) {
  std::unique_ptr<WorkerPool> pool(new WorkerPool(options));
  {
    // The pool owns the zygote from here: on an error below, its destructor closes and reaps it.
    absl::MutexLock lock(&pool->mu_);
    pool->generations_.emplace(1, ZygoteGeneration(1, std::move(zygote)));
    if (pool->wake_fd_ < 0) return absl::InternalError("eventfd failed");
    for (const ModelSpec& spec : specs) {
      pool->versions_.Add(spec, 1, VersionPhase::kLive, options.threads, pool->ReplayFor(spec));
    }
    pool->versions_.ResolveBudgets(options.memory_limit.bytes);
    for (const auto& model : pool->versions_.all()) {
      for (int slot = 0; slot < model->workers; ++slot) {
        if (absl::Status spawned = pool->SpawnLocked(*model, slot, WorkerStart::kStart);
            !spawned.ok()) {
          return spawned;
        }
      }
    }
  }
  pool->loop_ = std::thread([p = pool.get()] { p->Loop(); });
  return pool;
}

WorkerPool::WorkerPool(const WorkerPoolOptions& options)
    : options_(options), wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

WorkerPool::~WorkerPool() {
  Stop();
  close(wake_fd_);
}

int64_t WorkerPool::ReservationBytesLocked(const ServedVersion& model, bool* measured) const {
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

absl::Status WorkerPool::CheckRoomLocked(const ServedVersion& model, int count) const {
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

absl::Status WorkerPool::SpawnLocked(ServedVersion& model, int slot, WorkerStart cause) {
  const ModelConfig& config = model.spec->config;
  auto generation = generations_.find(model.generation);
  if (generation == generations_.end() || !generation->second.open()) {
    return absl::UnavailableError("no zygote to fork workers from");
  }
  FrameChannel& zygote = generation->second.channel();
  if (absl::Status room = CheckRoomLocked(model); !room.ok()) return room;
  auto worker = std::make_unique<Worker>();
  worker->id = next_worker_id_++;
  worker->slot = slot;
  worker->model = &model;
  worker->cause = cause;
  worker->spawned_at = std::chrono::steady_clock::now();
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
  ++model.by_state[static_cast<int>(WorkerState::kSpawning)];
  workers_[worker->id] = std::move(worker);
  return absl::OkStatus();
}

void WorkerPool::SetStateLocked(Worker& worker, WorkerState next) {
  if (!WorkerTransitionAllowed(worker.state, next)) {
    LOG(DFATAL) << "worker " << worker.id << ": illegal transition "
                << WorkerStateName(worker.state) << " -> " << WorkerStateName(next);
    return;
  }
  std::array<int, kWorkerStates>& by_state = worker.model->by_state;
  --by_state[static_cast<int>(worker.state)];
  if (next != WorkerState::kExited) ++by_state[static_cast<int>(next)];
  worker.state = next;
}

std::vector<Shape> WorkerPool::ReplayFor(const ModelSpec& spec) const {
  auto replay = options_.replay.find(spec.config.name());
  return replay != options_.replay.end() ? replay->second : std::vector<Shape>();
}

absl::Status WorkerPool::Submit(InferJob job) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("server is shutting down");
    ServedVersion* model = job.spec == nullptr ? nullptr : versions_.Find(job.spec.get());
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
    const int64_t queued_ns = job.queued_ns;
    if (absl::Status queued = model->queue->Push(std::move(job), queued_ns); !queued.ok()) {
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

ModelReadiness WorkerPool::Readiness(const std::string& name, int64_t version) const {
  absl::MutexLock lock(&mu_);
  return versions_.Readiness(name, version, stopping_);
}

bool WorkerPool::ModelReady(const std::string& name, int64_t version) const {
  return Readiness(name, version).serving;
}

bool WorkerPool::AllModelsReady() const {
  absl::MutexLock lock(&mu_);
  return versions_.AllLiveReady(stopping_);
}

absl::StatusOr<SharedSpec> WorkerPool::Route(const std::string& name, const std::string& version,
                                             bool staged) const {
  absl::MutexLock lock(&mu_);
  return versions_.Route(name, version, staged, stopping_);
}

std::vector<SharedSpec> WorkerPool::Served(bool staged) const {
  absl::MutexLock lock(&mu_);
  return versions_.Served(staged);
}

absl::Status WorkerPool::fatal_error() const {
  absl::MutexLock lock(&mu_);
  return fatal_;
}

ModelCounters WorkerPool::Counters(const std::string& name, int64_t version) const {
  absl::MutexLock lock(&mu_);
  return versions_.Counters(name, version);
}

void WorkerPool::ResetCounters() {
  absl::MutexLock lock(&mu_);
  versions_.ResetCounters();
}

void WorkerPool::StartServing() {
  std::vector<Completion> done;
  {
    absl::MutexLock transfer(&transfer_mu_);  // Promote goes on the workers' channels
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
  for (const ServedVersion* model : versions_.Match(name, version)) {
    budget = std::max(budget, model->budget_bytes);
  }
  return budget;
}

std::vector<WorkerInfo> WorkerPool::Workers() const {
  absl::MutexLock lock(&mu_);
  std::vector<WorkerInfo> infos;
  for (const auto& [id, worker] : workers_) {
    const ServedVersion& model = *worker->model;
    infos.push_back({worker->id, model.spec->config.name(), model.spec->version, model.spec,
                     model.generation, worker->pid, worker->state, worker->slot, worker->warmup});
  }
  return infos;
}

std::vector<VersionState> WorkerPool::VersionStates() const {
  absl::MutexLock lock(&mu_);
  std::vector<VersionState> states;
  for (const auto& model : versions_.all()) {
    VersionState& state = states.emplace_back();
    state.spec = model->spec;
    state.phase = model->phase;
    state.readiness = versions_.Readiness(*model, stopping_);
    state.queued = model->queue->size();
    state.budget_bytes = model->budget_bytes;
    for (int i = 0; i < kWorkerStates; ++i) {
      if (model->by_state[i] > 0) state.workers[static_cast<WorkerState>(i)] = model->by_state[i];
    }
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
  // Every channel closed (by the loop, or here when it never ran): the zygotes leave, their
  // templates and workers with them.
  std::vector<ZygoteGeneration> zygotes;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [number, generation] : generations_) zygotes.push_back(std::move(generation));
    generations_.clear();
    for (ZygoteGeneration& generation : closing_) zygotes.push_back(std::move(generation));
    closing_.clear();
  }
  for (ZygoteGeneration& zygote : zygotes) {
    zygote.Close();
    zygote.Reap(std::chrono::seconds(5));
  }
}

int WorkerPool::PollTimeoutMsLocked() const {
  int64_t nearest = 0;
  for (const auto& model : versions_.all()) {
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
      ServedVersion& model = *it->second->model;
      model.missing_slots.insert(it->second->slot);
      model.died_at.emplace(it->second->slot, std::chrono::steady_clock::now());
      if (options_.on_worker_died) options_.on_worker_died(*model.spec);
    }
    exited_.push_back(std::move(it->second));
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
        fds.push_back({generation.fd(), POLLIN, 0});
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
    // Held for the rest of the turn: the workers claimed below keep their channel and arena.
    absl::MutexLock transfer(&transfer_mu_);
    std::vector<Completion> done;
    std::vector<Transfer> sends;
    {
      absl::MutexLock lock(&mu_);
      exited_.clear();  // the last turn's completions are done with their arenas
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
        for (const auto& model : versions_.all()) {
          if (model->phase == VersionPhase::kRetiring ||
              (model->phase == VersionPhase::kStaged && !versions_.staging_failed().ok())) {
            continue;
          }
          for (auto slot = model->missing_slots.begin(); slot != model->missing_slots.end();) {
            absl::Status spawned = SpawnLocked(*model, *slot, WorkerStart::kRespawn);
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
      ReapLocked();
      ExpireLocked(done);
      StopHungLocked(done);
      DrainRetiringLocked(done);
      if (!fatal_.ok() && !fatal_told_ && options_.on_change) {
        fatal_told_ = true;
        options_.on_change();
      }
      for (const auto& model : versions_.all()) DispatchLocked(*model, sends);
    }
    // Without mu_: gRPC threads route and queue while the bytes move, in and out.
    SendCalls(sends);
    for (Completion& completion : done) completion.done(std::move(completion.outcome));
    std::vector<Completion> failed;
    if (std::any_of(sends.begin(), sends.end(),
                    [](const Transfer& send) { return !send.written.ok() || !send.sent.ok(); })) {
      absl::MutexLock lock(&mu_);
      FinishSendsLocked(sends, failed);
    }
    for (Completion& completion : failed) completion.done(std::move(completion.outcome));
  }

  // Stopping: fail what is left, close every channel (workers and then the zygotes exit).
  std::vector<Completion> done;
  {
    absl::MutexLock lock(&mu_);
    const absl::Status stopped = absl::UnavailableError("server is shutting down");
    for (const auto& model : versions_.all()) {
      for (InferJob& job : model->queue->TakeAll()) {
        done.push_back(Completion::Unsent(std::move(job.done), stopped));
      }
    }
    for (auto& [id, worker] : workers_) {
      EndJobs(*worker, stopped, done);
      worker->channel.Close();
    }
    workers_.clear();
    for (auto& [number, generation] : generations_) generation.Close();
  }
  for (Completion& completion : done) completion.done(std::move(completion.outcome));
}

bool WorkerPool::ZygoteHasEventLocked(int generation) const {
  auto it = generations_.find(generation);
  if (it == generations_.end() || !it->second.open()) return false;
  pollfd fd{it->second.fd(), POLLIN, 0};
  return poll(&fd, 1, 0) > 0 && (fd.revents & (POLLIN | POLLHUP | POLLERR));
}

void WorkerPool::HandleZygoteLocked(int generation) {
  auto found = generations_.find(generation);
  if (found == generations_.end() || !found->second.open()) return;
  FrameChannel& zygote = found->second.channel();
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
    it->second->forked_at = std::chrono::steady_clock::now();
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
    if (generation == versions_.staging_generation()) {
      StagingFailedLocked(absl::FailedPreconditionError(event.load_failed().message()));
    }
  }
}

void WorkerPool::StagingFailedLocked(const absl::Status& why) {
  if (!versions_.FailStaging(why)) return;
  LOG(WARNING) << "reload: generation " << versions_.staging_generation()
               << " failed: " << why.message();
  if (options_.on_change) options_.on_change();
}

void WorkerPool::ZygoteLostLocked(int generation, const absl::Status& why) {
  ZygoteGeneration& lost = generations_.at(generation);
  const bool may_restart = lost.Died(std::chrono::steady_clock::now());
  for (auto& [id, worker] : workers_) {
    // Never forked (no `started`): nothing will answer on its channel. Not the model's failure.
    if (worker->model->generation == generation && worker->state == WorkerState::kSpawning &&
        worker->pid == 0) {
      worker->channel.Close();
      SetStateLocked(*worker, WorkerState::kExited);
    }
  }
  if (generation == versions_.staging_generation()) {
    StagingFailedLocked(absl::UnavailableError(
        absl::StrCat("its zygote exited before its workers were warm (", why.message(), ")")));
    return;
  }
  if (!fatal_.ok() || stopping_) return;
  if (!options_.restart_zygote) {
    fatal_ = absl::UnavailableError(absl::StrCat("the zygote is gone (", why.message(),
                                                 "); workers can no longer be replaced"));
  } else if (!may_restart) {
    fatal_ = absl::UnavailableError(absl::StrCat(
        "the zygote died ", kMaxZygoteRestarts + 1, " times within ", kZygoteRestartWindow.count(),
        " s (a crash loop; the last: ", why.message(), ")"));
  } else {
    LOG(WARNING) << "the zygote of generation " << generation << " is gone (" << why.message()
                 << "); starting a new one";
    std::vector<std::string> keys;
    for (const auto& model : versions_.all()) {
      if (model->generation == generation && model->phase != VersionPhase::kRetiring) {
        keys.push_back(model->spec->key());
      }
    }
    absl::StatusOr<ZygoteProcess> restarted = options_.restart_zygote(generation, keys);
    if (restarted.ok()) {
      lost.Replace(*std::move(restarted));
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
  ServedVersion& model = *worker.model;
  while (worker.state == WorkerState::kSpawning && ZygoteHasEventLocked(model.generation)) {
    HandleZygoteLocked(model.generation);
  }
  const std::string name = model.spec->key();
  if (frame.has_ready() && worker.state == WorkerState::kWarming) {
    worker.warmup = frame.ready();
    worker.costs = WarmedCosts(worker.warmup);
    worker.compute_timeout_ms = ComputeTimeoutMs(model.spec->config, worker.warmup);
    SetStateLocked(worker, WorkerState::kReady);
    model.failed_starts = 0;
    model.ever_ready = true;
    model.reached_quorum = model.reached_quorum || model.warm() >= model.quorum;
    if (auto died = model.died_at.find(worker.slot); died != model.died_at.end()) {
      if (options_.on_worker_respawned) {
        options_.on_worker_respawned(
            *model.spec,
            std::chrono::duration<double>(std::chrono::steady_clock::now() - died->second).count());
      }
      model.died_at.erase(died);
    }
    const auto now = std::chrono::steady_clock::now();
    const double fork_s =
        std::chrono::duration<double>(worker.forked_at - worker.spawned_at).count();
    const double warm_s = std::chrono::duration<double>(now - worker.forked_at).count();
    if (options_.on_worker_ready) {
      options_.on_worker_ready(*model.spec, worker.cause, fork_s, warm_s);
    }
    LOG(INFO) << "worker " << worker.id << " (" << name << ", pid " << worker.pid
              << "): " << DescribeWarmupReport(worker.warmup)
              << absl::StrFormat(
                     "; %s: ready %.0f ms after it was asked for (forked after %.0f ms, then warm "
                     "after %.0f ms)",
                     WorkerStartName(worker.cause), (fork_s + warm_s) * 1e3, fork_s * 1e3,
                     warm_s * 1e3);
    // Before any call is dispatched to it; a staged worker stays idle until its version is Live.
    if (serving_ && model.phase != VersionPhase::kStaged) PromoteLocked(worker, done);
    if (options_.on_change) options_.on_change();
  } else if (frame.has_result() && worker.state == WorkerState::kBusy &&
             frame.result().call_id() == worker.call_id) {
    const internal::InferResult& result = frame.result();
    VersionTable::Count(model, result, static_cast<int>(worker.jobs.size()));
    InferOutcome outcome;
    const int64_t received_ns = MonotonicNowNs();
    // Views, not copies: the response is encoded straight from the arena. The worker's next call
    // uses the other half of it, so it may run while these are read.
    outcome.outputs =
        result.code() == 0
            ? ViewsInArena(result.outputs(), *worker.arena)
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
    if (worker.jobs.front().text != nullptr) outcome.tokenize_ms = result.tokenize_ms();
    CompleteJobs(worker, std::move(outcome), done);
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

void WorkerPool::WorkerGoneLocked(Worker& worker, const std::string& why,
                                  std::vector<Completion>& done, absl::Status job_error) {
  ServedVersion& model = *worker.model;
  LOG(WARNING) << "worker " << worker.id << " (" << model.spec->key() << ", pid " << worker.pid
               << ", " << WorkerStateName(worker.state) << ") is gone: " << why;
  if (!worker.jobs.empty()) {
    if (job_error.ok()) {
      job_error =
          absl::UnavailableError(absl::StrCat("worker ", worker.id, " (pid ", worker.pid,
                                              ") died while serving this request; retry it"));
    }
    EndJobs(worker, job_error, done);
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
    const std::vector<ServedVersion*> matched = versions_.Match(name, version);
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
    for (ServedVersion* model : matched) {
      if (absl::Status set = SetWorkersLocked(*model, count); !set.ok() && result.ok()) {
        result = set;
      }
    }
  }
  Wake();
  return result;
}

absl::Status WorkerPool::SetWorkersLocked(ServedVersion& model, int count) {
  absl::Status result;
  if (count > model.workers) {
    // All the new workers must fit, or none is started.
    RETURN_IF_ERROR(CheckRoomLocked(model, count - model.workers));
    while (model.workers < count && result.ok()) {
      result = SpawnLocked(model, model.workers, WorkerStart::kScaleUp);
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

absl::Status WorkerPool::Stage(ZygoteProcess zygote, int generation,
                               const std::vector<ModelSpec>& specs,
                               const std::map<std::string, ModelThreads>& threads) {
  absl::Status spawned;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("server is shutting down");
    if (versions_.staging_generation() != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("generation ", versions_.staging_generation(), " is still being staged"));
    }
    if (generations_.count(generation) > 0) {
      return absl::InvalidArgumentError(absl::StrCat("generation ", generation, " exists"));
    }
    generations_.emplace(generation, ZygoteGeneration(generation, std::move(zygote)));
    versions_.BeginStaging(generation);
    std::vector<ServedVersion*> staged;
    for (const ModelSpec& spec : specs) {
      staged.push_back(
          &versions_.Add(spec, generation, VersionPhase::kStaged, threads, ReplayFor(spec)));
    }
    versions_.ResolveBudgets(options_.memory_limit.bytes);
    // Both generations must fit while they overlap: every staged worker is admitted (its
    // reservation counted for the next one) or the staging is refused.
    for (ServedVersion* model : staged) {
      for (int slot = 0; slot < model->workers && spawned.ok(); ++slot) {
        spawned = SpawnLocked(*model, slot, WorkerStart::kReload);
      }
    }
    if (spawned.ok()) {
      LOG(INFO) << "reload: generation " << generation << " stages " << specs.size()
                << " model version(s)";
    } else {
      versions_.FailStaging(spawned);
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
  return versions_.StagingState(stopping_);
}

void WorkerPool::Commit(const std::vector<SharedSpec>& retire) {
  std::vector<Completion> done;
  {
    absl::MutexLock transfer(&transfer_mu_);  // Promote goes on the workers' channels
    absl::MutexLock lock(&mu_);
    const int staged = versions_.Commit(retire);
    for (auto& [id, worker] : workers_) {
      if (staged != 0 && worker->model->generation == staged &&
          (worker->state == WorkerState::kReady || worker->state == WorkerState::kBusy)) {
        PromoteLocked(*worker, done);
      }
    }
  }
  Wake();
  for (Completion& completion : done) completion.done(std::move(completion.outcome));
}

void WorkerPool::Abort() {
  std::vector<Completion> done;
  {
    absl::MutexLock transfer(&transfer_mu_);  // it closes channels and drops workers
    absl::MutexLock lock(&mu_);
    const int staged = versions_.staging_generation();
    if (staged == 0) return;
    for (auto& [id, worker] : workers_) {
      if (worker->model->phase != VersionPhase::kStaged || worker->state == WorkerState::kExited) {
        continue;
      }
      // Retired, not gone: no failed start is counted (WorkerGoneLocked would) and no
      // replacement made.
      EndJobs(*worker, absl::UnavailableError("the version was abandoned by its reload"), done);
      worker->retiring = true;
      RetireLocked(*worker, "its reload was abandoned");
    }
    ForgetExitedLocked();
    for (InferJob& job : versions_.DropStaged()) {
      done.emplace_back(std::move(job.done),
                        absl::UnavailableError("the version was abandoned by its reload"));
    }
    LOG(WARNING) << "reload: generation " << staged << " abandoned";
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

std::map<int, pid_t> WorkerPool::ZygotePids() const {
  absl::MutexLock lock(&mu_);
  std::map<int, pid_t> pids;
  for (const auto& [number, generation] : generations_) {
    if (generation.pid() > 0) pids[number] = generation.pid();
  }
  return pids;
}

void WorkerPool::KillZygotes() const {
  absl::MutexLock lock(&mu_);
  for (const auto& [number, generation] : generations_) generation.Kill();
  for (const ZygoteGeneration& generation : closing_) generation.Kill();
}

void WorkerPool::ReapLocked() {
  closing_.erase(std::remove_if(closing_.begin(), closing_.end(),
                                [](ZygoteGeneration& generation) {
                                  const pid_t pid = generation.pid();
                                  if (!generation.TryReap()) return false;
                                  LOG_IF(INFO, pid > 0)
                                      << "the zygote of generation " << generation.number()
                                      << " (pid " << pid << ") left";
                                  return true;
                                }),
                 closing_.end());
  // The master is the subreaper of everything it starts (server/master.cc): a worker whose zygote
  // died is re-parented to it, not to init, and is reaped here once it exits.
  // An adopted child's exit is rare and no one waits for it: a look every 200 ms, not every turn.
  const auto now = std::chrono::steady_clock::now();
  if (!options_.reap_adopted || now - last_reap_ < std::chrono::milliseconds(200)) return;
  last_reap_ = now;
  std::set<pid_t> owned;
  for (const auto& [number, generation] : generations_) owned.insert(generation.pid());
  for (const ZygoteGeneration& generation : closing_) owned.insert(generation.pid());
  for (const auto& [pid, status] : ReapAdoptedChildren(owned)) {
    LOG(INFO) << "reaped pid " << pid << " (" << status.Describe()
              << "), a worker whose zygote had died";
  }
}

void WorkerPool::CloseUnusedGenerationsLocked() {
  for (auto it = generations_.begin(); it != generations_.end();) {
    const int number = it->first;
    const bool used = versions_.GenerationUsed(number);
    if (used) {
      ++it;
      continue;
    }
    LOG(INFO) << "reload: generation " << number << " serves nothing any more; its zygote leaves";
    it->second.Close();  // the zygote exits on EOF; ReapLocked reaps it
    closing_.push_back(std::move(it->second));
    it = generations_.erase(it);
  }
}

void WorkerPool::DrainRetiringLocked(std::vector<Completion>& done) {
  std::vector<ServedVersion*> retiring;
  for (const auto& model : versions_.all()) {
    if (model->phase == VersionPhase::kRetiring) retiring.push_back(model.get());
  }
  bool dropped = false;
  for (ServedVersion* version : retiring) {
    ServedVersion& model = *version;
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
    if (working) continue;
    // No worker left to serve what is still queued (they died): those calls cannot run.
    for (InferJob& job : model.queue->TakeAll()) {
      done.push_back(Completion::Unsent(
          std::move(job.done), absl::UnavailableError(absl::StrCat(
                                   "model version '", model.spec->key(),
                                   "' was replaced and its workers are gone; retry the request"))));
    }
    for (auto worker = workers_.begin(); worker != workers_.end();) {
      if (worker->second->model != &model) {
        ++worker;
        continue;
      }
      exited_.push_back(std::move(worker->second));
      worker = workers_.erase(worker);
    }
    LOG(INFO) << "reload: " << model.spec->key() << " (generation " << model.generation
              << ") retired";
    // Its zygote may serve other versions on: its template (and that memory) goes now.
    if (auto generation = generations_.find(model.generation);
        generation != generations_.end() && generation->second.open()) {
      internal::ZygoteCommand drop;
      drop.mutable_drop_template()->set_model(model.spec->key());
      (void)generation->second.channel().Send(drop);
    }
    versions_.Erase(version);
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
  for (const auto& model : versions_.all()) {
    for (auto& [job, why] : model->queue->TakeTimedOut(now)) {
      done.push_back(Completion::Unsent(std::move(job.done), std::move(why)));
    }
  }
}

void WorkerPool::DispatchLocked(ServedVersion& model, std::vector<Transfer>& sends) {
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
    const int take = PlanBatch(model.spec->config,
                               model.queue->Front(std::max(1, model.spec->config.max_batch_size())),
                               idle->costs);
    idle->jobs = model.queue->PopFront(take);
    const int64_t now = MonotonicNowNs();
    // The call ends by the latest deadline of its jobs (none when one has none): a job whose own
    // deadline passes meanwhile is answered DEADLINE_EXCEEDED by its RPC, not by cutting the
    // others' call short.
    int64_t deadline = 0;
    bool unbounded = false;
    for (InferJob& job : idle->jobs) {
      job.sent_ns = now;
      unbounded = unbounded || job.deadline_monotonic_ns == 0;
      deadline = std::max(deadline, job.deadline_monotonic_ns);
    }
    Transfer& transfer = sends.emplace_back();
    transfer.worker = idle;
    transfer.spec = model.spec;
    const uint64_t half = idle->arena->size() / 2;
    transfer.begin = idle->upper_half ? half : 0;
    transfer.end = transfer.begin + half;
    idle->upper_half = !idle->upper_half;
    internal::InferCall& call = *transfer.frame.mutable_infer();
    call.set_call_id(next_call_id_++);
    call.set_deadline_monotonic_ns(unbounded ? 0 : deadline);
    idle->call_id = call.call_id();
    idle->call_deadline_ns = now + static_cast<int64_t>(idle->compute_timeout_ms * 1e6);
    SetStateLocked(*idle, WorkerState::kBusy);
  }
}

void WorkerPool::SendCalls(std::vector<Transfer>& sends) {
  for (Transfer& transfer : sends) {
    Worker& worker = *transfer.worker;
    const InferJob& first = worker.jobs.front();
    internal::InferCall& call = *transfer.frame.mutable_infer();
    const int64_t start_ns = MonotonicNowNs();
    absl::StatusOr<uint64_t> output_offset;
    if (first.text != nullptr) {
      std::vector<const std::vector<std::string>*> texts;
      for (const InferJob& job : worker.jobs) texts.push_back(job.text);
      output_offset =
          WriteTextBatchToArena(transfer.spec->config.tokenizer().text_input(), texts,
                                transfer.begin, *worker.arena, *call.mutable_text(), transfer.end);
    } else {
      std::vector<const std::vector<TensorView>*> requests;
      for (const InferJob& job : worker.jobs) requests.push_back(&job.inputs);
      output_offset = WriteBatchToArena(requests, transfer.begin, *worker.arena,
                                        *call.mutable_inputs(), transfer.end);
    }
    transfer.written = output_offset.status();
    if (!output_offset.ok()) continue;
    call.set_output_offset(*output_offset);
    call.set_output_end(transfer.end);
    const double input_ms = (MonotonicNowNs() - start_ns) / 1e6;
    for (InferJob& job : worker.jobs) job.input_ms = input_ms;
    transfer.sent = worker.channel.Send(transfer.frame);
  }
}

void WorkerPool::EndJobs(Worker& worker, const absl::Status& why, std::vector<Completion>& done) {
  for (InferJob& job : worker.jobs) done.emplace_back(std::move(job.done), why);
  worker.jobs.clear();
}

void WorkerPool::CompleteJobs(Worker& worker, InferOutcome outcome, std::vector<Completion>& done) {
  std::vector<InferJob> jobs = std::move(worker.jobs);
  worker.jobs.clear();
  std::vector<int64_t> rows;  // each job's, in the call's order
  for (const InferJob& job : jobs) rows.push_back(JobRows(job));
  outcome.call_jobs = static_cast<int>(jobs.size());
  for (int64_t n : rows) outcome.call_rows += n;
  // A batch's outputs must hold every job's rows; else each job fails with why.
  if (outcome.outputs.ok() && jobs.size() > 1) {
    for (const TensorView& output : *outcome.outputs) {
      if (output.shape.empty() || output.shape[0] != outcome.call_rows ||
          (outcome.call_rows > 0 && output.nbytes % outcome.call_rows != 0)) {
        outcome.outputs = absl::InternalError(absl::StrCat(
            "the worker returned output '", output.name, "' of shape ", ShapeString(output.shape),
            " for a batch of ", jobs.size(), " requests of ", outcome.call_rows, " rows"));
        break;
      }
    }
  }
  int64_t begin = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    InferOutcome mine = outcome;
    if (jobs.size() > 1 && outcome.outputs.ok()) {
      std::vector<TensorView> slices;
      for (const TensorView& output : *outcome.outputs) {
        slices.push_back(SliceRows(output, begin, rows[j]));
      }
      mine.outputs = std::move(slices);
    }
    begin += rows[j];
    mine.first_in_call = j == 0;
    mine.queue_ms = (jobs[j].sent_ns - jobs[j].queued_ns) / 1e6;
    mine.input_ms = jobs[j].input_ms;
    done.emplace_back(std::move(jobs[j].done), std::move(mine));
  }
}

void WorkerPool::FinishSendsLocked(std::vector<Transfer>& sends, std::vector<Completion>& done) {
  for (Transfer& transfer : sends) {
    Worker& worker = *transfer.worker;
    if (!transfer.written.ok()) {  // nothing was sent: the worker is idle again
      EndJobs(worker, transfer.written, done);
      SetStateLocked(worker, WorkerState::kReady);
      Wake();  // it may take the next queued job
    } else if (!transfer.sent.ok()) {
      WorkerGoneLocked(worker, absl::StrCat("sending a call failed (", transfer.sent.message(), ")"),
                       done);
    }
  }
}

}  // namespace kiln
