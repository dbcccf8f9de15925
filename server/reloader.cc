#include "server/reloader.h"

#include <algorithm>
#include <chrono>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "glog/logging.h"

namespace kiln {
namespace {

std::string Keys(const std::vector<ModelSpec>& specs) {
  std::vector<std::string> keys;
  for (const ModelSpec& spec : specs) keys.push_back(spec.key());
  return absl::StrJoin(keys, ", ");
}

inference::RepositoryIndexResponse::ModelIndex Entry(const std::string& name,
                                                     const std::string& version,
                                                     const std::string& state,
                                                     const std::string& reason) {
  inference::RepositoryIndexResponse::ModelIndex entry;
  entry.set_name(name);
  entry.set_version(version);
  entry.set_state(state);
  entry.set_reason(reason);
  return entry;
}

// InvalidArgument naming every model directory the plan refused.
absl::Status Refused(const ReloadPlan& plan) {
  std::vector<std::string> parts;
  for (const auto& [name, why] : plan.refused) parts.push_back(why);
  return absl::InvalidArgumentError(
      absl::StrCat(absl::StrJoin(parts, "\n"), "\n(the versions served now keep serving)"));
}

}  // namespace

Reloader::Reloader(std::string repository, WorkerPool& pool, ReloadHooks hooks, int timeout_s)
    : repository_(std::move(repository)),
      pool_(pool),
      hooks_(std::move(hooks)),
      timeout_s_(timeout_s) {}

void Reloader::Request(ReloadRequest request, Done done) {
  {
    absl::MutexLock lock(&mu_);
    queue_.emplace_back(std::move(request), std::move(done));
  }
  hooks_.wake();
}

void Reloader::Cancel(const absl::Status& why) {
  if (current_.has_value()) {
    if (current_->step != ReloadStep::kIdle) pool_.Abort();
    current_->loading = false;  // not the loaded models' failure
    Finish(why);
  }
  std::deque<std::pair<ReloadRequest, Done>> pending;
  {
    absl::MutexLock lock(&mu_);
    pending.swap(queue_);
  }
  for (auto& [request, done] : pending) done(why);
}

void Reloader::Advance() {
  if (!current_.has_value()) {
    Begin();
    return;
  }
  if (current_->step == ReloadStep::kStaging) {
    const WorkerPool::Staging staging = pool_.StagingState();
    if (!staging.failed.ok()) {
      Abort(staging.failed);
    } else if (staging.ready) {
      EndPhase("warm");
      current_->step = ReloadStep::kChecking;
      VLOG(1) << "reload (" << current_->request.Describe() << "): " << staging.summary
              << "; checking";
    } else if (std::chrono::steady_clock::now() > current_->deadline) {
      Abort(absl::DeadlineExceededError(absl::StrCat(
          "not warm after ", timeout_s_, " s (--startup_timeout_s): ", staging.summary)));
    }
    return;
  }
  // kChecking: the readiness check runs here, on the main thread, as at startup.
  if (absl::Status checked = hooks_.check_staged(); !checked.ok()) {
    Abort(checked);
    return;
  }
  EndPhase("readiness_check");
  Commit();
}

void Reloader::EndPhase(const char* name) {
  const auto now = std::chrono::steady_clock::now();
  const double ms = std::chrono::duration<double, std::milli>(now - current_->phase_start).count();
  current_->phases.emplace_back(name, ms);
  current_->phase_start = now;
  if (hooks_.phase_done) hooks_.phase_done(name, ms / 1e3);
}

void Reloader::Begin() {
  std::pair<ReloadRequest, Done> next;
  {
    absl::MutexLock lock(&mu_);
    if (queue_.empty()) return;
    next = std::move(queue_.front());
    queue_.pop_front();
  }
  current_.emplace();
  current_->request = std::move(next.first);
  current_->done = std::move(next.second);
  current_->start = std::chrono::steady_clock::now();
  current_->phase_start = current_->start;
  const ReloadRequest& request = current_->request;

  absl::StatusOr<std::map<std::string, absl::StatusOr<std::vector<ModelSpec>>>> repository =
      ScanRepository(repository_);
  if (!repository.ok()) {
    Finish(Annotate(repository.status(), "model repository"));
    return;
  }
  absl::StatusOr<ReloadPlan> plan = PlanReload(request, pool_.Served(), *repository);
  if (!plan.ok()) {
    Finish(plan.status());
    return;
  }
  current_->plan = *std::move(plan);
  EndPhase("plan");
  LOG(INFO) << "reload (" << request.Describe() << "): " << current_->plan.Describe();
  LogConfigNotes(current_->plan.load);
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, why] : current_->plan.refused) failures_[name] = why;
  }
  if (request.kind == ReloadRequest::Kind::kLoad && !current_->plan.refused.empty()) {
    Finish(Refused(current_->plan));
    return;
  }
  if (current_->plan.load.empty()) {
    Commit();  // retirements only (an unload, a model gone from the repository), or nothing
    return;
  }

  current_->loading = true;
  const int generation = next_generation_++;
  std::vector<std::string> keys;
  std::map<std::string, ModelThreads> threads;
  for (const ModelSpec& spec : current_->plan.load) {
    keys.push_back(spec.key());
    threads[spec.key()] = hooks_.threads_for(spec);
  }
  absl::StatusOr<ZygoteProcess> zygote = hooks_.start_zygote(generation, keys);
  if (!zygote.ok()) {
    Finish(zygote.status());
    return;
  }
  if (absl::Status staged =
          pool_.Stage(*std::move(zygote), generation, current_->plan.load, threads);
      !staged.ok()) {
    Finish(staged);
    return;
  }
  EndPhase("start_zygote");
  current_->step = ReloadStep::kStaging;
  current_->deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s_);
}

void Reloader::Commit() {
  pool_.Commit(current_->plan.retire);  // routing switches here, in one step
  hooks_.switched();                    // health follows, before the request is answered
  EndPhase("switch");
  const ReloadRequest& request = current_->request;
  {
    absl::MutexLock lock(&mu_);
    for (const ModelSpec& spec : current_->plan.load) {
      failures_.erase(spec.config.name());
      unloaded_.erase(spec.config.name());
    }
    if (request.kind == ReloadRequest::Kind::kLoad) unloaded_.erase(request.model);
    if (request.kind == ReloadRequest::Kind::kUnload) {
      failures_.erase(request.model);
      unloaded_[request.model] = true;
    }
  }
  Finish(absl::OkStatus());
}

void Reloader::Abort(const absl::Status& why) {
  pool_.Abort();
  Finish(why);
}

void Reloader::Finish(absl::Status status) {
  Current current = *std::move(current_);
  current_.reset();
  const ReloadPlan& plan = current.plan;
  if (!status.ok() && current.loading) {
    // The staged versions failed: their models say why in the index until a reload succeeds.
    const std::string why =
        absl::StrCat("loading ", Keys(plan.load), " failed: ", status.message());
    absl::MutexLock lock(&mu_);
    for (const ModelSpec& spec : plan.load) failures_[spec.config.name()] = why;
    status = absl::Status(status.code(), why);
  }
  // A whole-repository reload serves what loaded, and still says what it refused.
  if (status.ok() && current.request.kind == ReloadRequest::Kind::kRepository &&
      !plan.refused.empty()) {
    status = Refused(plan);
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - current.start)
          .count();
  std::vector<std::string> phases;
  for (const auto& [name, phase_ms] : current.phases) {
    phases.push_back(absl::StrFormat("%s %.0f ms", name, phase_ms));
  }
  const std::string timed = absl::StrFormat("%.0f ms (%s)", ms, absl::StrJoin(phases, ", "));
  if (status.ok()) {
    LOG(INFO) << "reload (" << current.request.Describe() << "): done in " << timed;
  } else {
    LOG(WARNING) << "reload (" << current.request.Describe() << ") failed after " << timed
                 << "; what was served keeps serving: " << status.message();
  }
  current.done(status);
}

std::vector<inference::RepositoryIndexResponse::ModelIndex> Reloader::Index(bool ready_only) const {
  std::vector<inference::RepositoryIndexResponse::ModelIndex> index;
  std::map<std::string, std::string> failures;
  std::map<std::string, bool> unloaded;
  {
    absl::MutexLock lock(&mu_);
    failures = failures_;
    unloaded = unloaded_;
  }
  const auto failure = [&failures](const std::string& name) {
    auto found = failures.find(name);
    return found == failures.end() ? std::string() : found->second;
  };
  std::set<std::string> serving;
  for (const SharedSpec& spec : pool_.Served()) {
    const std::string& name = spec->config.name();
    serving.insert(name);
    const bool ready = pool_.ModelReady(name, spec->version);
    index.push_back(Entry(name, std::to_string(spec->version), ready ? "READY" : "UNAVAILABLE",
                          ready ? failure(name) : "below its readiness quorum"));
  }
  for (const SharedSpec& spec : pool_.Served(/*staged=*/true)) {
    index.push_back(Entry(spec->config.name(), std::to_string(spec->version), "LOADING", ""));
  }
  if (absl::StatusOr<std::map<std::string, absl::StatusOr<std::vector<ModelSpec>>>> repository =
          ScanRepository(repository_);
      repository.ok()) {
    for (const auto& [name, versions] : *repository) {
      if (serving.count(name) > 0) continue;
      std::string reason = failure(name);
      if (reason.empty()) reason = unloaded.count(name) > 0 ? "unloaded" : "not loaded";
      index.push_back(Entry(name, "", "UNAVAILABLE", reason));
    }
  }
  if (ready_only) {
    index.erase(std::remove_if(index.begin(), index.end(),
                               [](const auto& entry) { return entry.state() != "READY"; }),
                index.end());
  }
  std::sort(index.begin(), index.end(), [](const auto& a, const auto& b) {
    return std::make_pair(a.name(), a.version()) < std::make_pair(b.name(), b.version());
  });
  return index;
}

}  // namespace kiln
