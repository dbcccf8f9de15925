// The pool's start, its queries, its loop, a worker's frames and exit, and scaling. Zygote
// generations and reloads are in worker_pool_generations.cc, calls in worker_pool_calls.cc.
#include "server/supervisor/worker_pool.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/arena_tensors.h"
#include "common/clock.h"
#include "common/memory_budget.h"
#include "common/shape.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "glog/logging.h"
#include "server/supervisor/batch_plan.h"
#include "server/supervisor/device_choice.h"
#include "server/supervisor/warmup_report_text.h"
#include "server/supervisor/worker_pool_worker.h"

namespace kiln {

// Workers of one model that die before ever becoming ready this many times in a row make the
// pool fatal (a crash loop is not something to retry forever).
constexpr int kMaxFailedStarts = 3;

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
  spawn.set_intra_op_threads_automatic(model.threads_automatic);
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

}  // namespace kiln
