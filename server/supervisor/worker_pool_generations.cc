// WorkerPool's zygote generations (docs/ARCHITECTURE.md, "Versions and reload"): a zygote's
// events and its loss, a reload's staging, commit and abort, reaping, and retiring the workers of
// a version that leaves. The rest of the pool is in worker_pool.cc.
#include <poll.h>

#include <algorithm>
#include <csignal>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/process.h"
#include "common/status_util.h"
#include "glog/logging.h"
#include "server/supervisor/worker_pool.h"
#include "server/supervisor/worker_pool_worker.h"

namespace kiln {

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

}  // namespace kiln
