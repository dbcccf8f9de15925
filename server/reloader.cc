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

void Reloader::FailPending(const absl::Status& why) {
  std::deque<std::pair<ReloadRequest, Done>> pending;
  {
    absl::MutexLock lock(&mu_);
    pending.swap(queue_);
  }
  for (auto& [request, done] : pending) done(why);
}

bool Reloader::RunPending() {
  while (true) {
    std::pair<ReloadRequest, Done> next;
    {
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) return true;
      next = std::move(queue_.front());
      queue_.pop_front();
    }
    const auto start = std::chrono::steady_clock::now();
    absl::Status status = Run(next.first);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (status.ok()) {
      LOG(INFO) << "reload (" << next.first.Describe() << "): done in "
                << absl::StrFormat("%.0f", ms) << " ms";
    } else {
      LOG(WARNING) << "reload (" << next.first.Describe() << ") failed after "
                   << absl::StrFormat("%.0f", ms)
                   << " ms; what was served keeps serving: " << status.message();
    }
    next.second(status);
    if (absl::IsCancelled(status)) return false;
  }
}

absl::Status Reloader::Run(const ReloadRequest& request) {
  absl::StatusOr<std::map<std::string, absl::StatusOr<std::vector<ModelSpec>>>> repository =
      ScanRepository(repository_);
  if (!repository.ok()) return Annotate(repository.status(), "model repository");
  ASSIGN_OR_RETURN(const ReloadPlan plan, PlanReload(request, pool_.Served(), *repository));
  LOG(INFO) << "reload (" << request.Describe() << "): " << plan.Describe();
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, why] : plan.refused) failures_[name] = why;
  }
  const auto refused = [&plan]() {
    std::vector<std::string> parts;
    for (const auto& [name, why] : plan.refused) parts.push_back(why);
    return absl::InvalidArgumentError(
        absl::StrCat(absl::StrJoin(parts, "\n"), "\n(the versions served now keep serving)"));
  };
  if (request.kind == ReloadRequest::Kind::kLoad && !plan.refused.empty()) return refused();

  if (!plan.load.empty()) {
    if (absl::Status staged = StageAndCheck(plan); !staged.ok()) {
      if (absl::IsCancelled(staged)) return staged;
      const std::string why =
          absl::StrCat("loading ", Keys(plan.load), " failed: ", staged.message());
      absl::MutexLock lock(&mu_);
      for (const ModelSpec& spec : plan.load) failures_[spec.config.name()] = why;
      return absl::Status(staged.code(), why);
    }
  }
  pool_.Commit(plan.retire);  // routing switches here, in one step
  hooks_.switched();
  absl::MutexLock lock(&mu_);
  for (const ModelSpec& spec : plan.load) {
    failures_.erase(spec.config.name());
    unloaded_.erase(spec.config.name());
  }
  if (request.kind == ReloadRequest::Kind::kLoad) unloaded_.erase(request.model);
  if (request.kind == ReloadRequest::Kind::kUnload) {
    failures_.erase(request.model);
    unloaded_[request.model] = true;
  }
  if (request.kind == ReloadRequest::Kind::kRepository && !plan.refused.empty()) {
    return refused();
  }
  return absl::OkStatus();
}

absl::Status Reloader::StageAndCheck(const ReloadPlan& plan) {
  const int generation = next_generation_++;
  std::vector<std::string> keys;
  std::map<std::string, ModelThreads> threads;
  for (const ModelSpec& spec : plan.load) {
    keys.push_back(spec.key());
    threads[spec.key()] = hooks_.threads_for(spec);
  }
  ASSIGN_OR_RETURN(FrameChannel zygote, hooks_.start_zygote(generation, keys));
  RETURN_IF_ERROR(pool_.Stage(std::move(zygote), generation, plan.load, threads));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s_);
  while (true) {
    const WorkerPool::Staging staging = pool_.StagingState();
    if (!staging.failed.ok()) {
      pool_.Abort();
      return staging.failed;
    }
    if (staging.ready) break;
    if (std::chrono::steady_clock::now() > deadline) {
      pool_.Abort();
      return absl::DeadlineExceededError(absl::StrCat(
          "not warm after ", timeout_s_, " s (--startup_timeout_s): ", staging.summary));
    }
    if (!hooks_.keep_serving()) {
      pool_.Abort();
      return absl::CancelledError("the server is stopping");
    }
  }
  if (absl::Status checked = hooks_.check_staged(); !checked.ok()) {
    pool_.Abort();
    return checked;
  }
  return absl::OkStatus();
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
