#include "server/supervisor/version_table.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/arena_tensors.h"
#include "common/memory_budget.h"
#include "glog/logging.h"

namespace kiln {

int ServedVersion::warm() const {
  return by_state[static_cast<int>(WorkerState::kReady)] +
         by_state[static_cast<int>(WorkerState::kBusy)];
}

void ServedVersion::ResolveQuorum() {
  const ReadinessConfig& readiness = spec->config.readiness();
  quorum = readiness.quorum() > 0 ? std::min(readiness.quorum(), workers) : workers;
  min_ready = std::clamp(readiness.min_ready(), 1, quorum);
}

ServedVersion& VersionTable::Add(const ModelSpec& spec, int generation, VersionPhase phase,
                                 const std::map<std::string, ModelThreads>& threads,
                                 std::vector<Shape> replay) {
  auto version = std::make_unique<ServedVersion>();
  const ModelConfig& config = spec.config;
  version->spec = std::make_shared<const ModelSpec>(spec);
  version->generation = generation;
  version->phase = phase;
  const auto planned = threads.find(spec.key());
  const ModelThreads plan = planned != threads.end() ? planned->second : ModelThreads();
  version->workers = std::max(plan.workers, 1);
  version->threads = std::max(plan.intra_op_threads, 1);
  version->threads_automatic = plan.automatic_threads;
  version->ResolveQuorum();
  version->arena_bytes = ArenaBytesFor(config);
  version->queue.emplace(config.dynamic_batching());
  version->replay = std::move(replay);
  versions_.push_back(std::move(version));
  return *versions_.back();
}

ServedVersion* VersionTable::Find(const ModelSpec* spec) const {
  for (const auto& version : versions_) {
    if (version->spec.get() == spec) return version.get();
  }
  return nullptr;
}

std::vector<ServedVersion*> VersionTable::Match(const std::string& name, int64_t number,
                                                VersionPhase phase) const {
  std::vector<ServedVersion*> matched;
  for (const auto& version : versions_) {
    if (version->phase == phase && version->spec->config.name() == name &&
        (number == kEveryVersion || version->spec->version == number)) {
      matched.push_back(version.get());
    }
  }
  return matched;
}

void VersionTable::Erase(const ServedVersion* version) {
  versions_.erase(std::remove_if(versions_.begin(), versions_.end(),
                                 [version](const auto& held) { return held.get() == version; }),
                  versions_.end());
}

void VersionTable::ResolveBudgets(int64_t memory_limit_bytes) {
  // A budget is a share of the limit among every worker wanted now; a version keeps the budget
  // its workers warmed under.
  int total_workers = 0;
  for (const auto& version : versions_) total_workers += version->workers;
  for (const auto& version : versions_) {
    const ModelConfig& config = version->spec->config;
    if (version->budget_bytes == 0 &&
        (memory_limit_bytes > 0 || config.memory().limit_bytes() > 0)) {
      version->budget_bytes = WorkerBudgetBytes(config.memory(), memory_limit_bytes, total_workers);
    }
  }
}

ModelReadiness VersionTable::Readiness(const ServedVersion& version, bool stopping) const {
  ModelReadiness readiness;
  readiness.warm = version.warm();
  readiness.workers = version.workers;
  readiness.quorum = version.quorum;
  readiness.min_ready = version.min_ready;
  readiness.serving =
      !stopping && readiness.warm >= (version.reached_quorum ? version.min_ready : version.quorum);
  return readiness;
}

ModelReadiness VersionTable::Readiness(const std::string& name, int64_t number,
                                       bool stopping) const {
  const std::vector<ServedVersion*> matched = Match(name, number);
  ModelReadiness sum;
  sum.serving = !matched.empty();
  for (const ServedVersion* version : matched) {
    const ModelReadiness one = Readiness(*version, stopping);
    sum.warm += one.warm;
    sum.workers += one.workers;
    sum.quorum += one.quorum;
    sum.min_ready += one.min_ready;
    sum.serving = sum.serving && one.serving;
  }
  return sum;
}

bool VersionTable::AllLiveReady(bool stopping) const {
  return std::all_of(versions_.begin(), versions_.end(), [&](const auto& version) {
    return version->phase != VersionPhase::kLive || Readiness(*version, stopping).serving;
  });
}

absl::StatusOr<SharedSpec> VersionTable::Route(const std::string& name, const std::string& version,
                                               bool staged, bool stopping) const {
  int64_t number = kEveryVersion;
  if (!version.empty() && (!absl::SimpleAtoi(version, &number) || number < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("model_version '", version, "' of model '", name,
                                                   "': expected a version number >= 1"));
  }
  const VersionPhase phase = staged ? VersionPhase::kStaged : VersionPhase::kLive;
  const std::vector<ServedVersion*> versions = Match(name, kEveryVersion, phase);
  if (versions.empty()) {
    std::set<std::string> names;
    for (const auto& served : versions_) {
      if (served->phase == phase) names.insert(served->spec->config.name());
    }
    return absl::NotFoundError(absl::StrCat("unknown model '", name,
                                            "'; this server serves: ", absl::StrJoin(names, ", ")));
  }
  const ServedVersion* newest = nullptr;
  const ServedVersion* newest_ready = nullptr;
  for (const ServedVersion* served : versions) {
    if (number != kEveryVersion && served->spec->version == number) return served->spec;
    if (newest == nullptr || served->spec->version > newest->spec->version) newest = served;
    if (Readiness(*served, stopping).serving &&
        (newest_ready == nullptr || served->spec->version > newest_ready->spec->version)) {
      newest_ready = served;
    }
  }
  if (number == kEveryVersion) return (newest_ready != nullptr ? newest_ready : newest)->spec;
  std::vector<int64_t> numbers;
  for (const ServedVersion* served : versions) numbers.push_back(served->spec->version);
  std::sort(numbers.begin(), numbers.end());
  return absl::NotFoundError(absl::StrCat("model '", name, "' has no version ", number,
                                          " served; it serves version(s) ",
                                          absl::StrJoin(numbers, ", ")));
}

std::vector<SharedSpec> VersionTable::Served(bool staged) const {
  const VersionPhase phase = staged ? VersionPhase::kStaged : VersionPhase::kLive;
  std::vector<SharedSpec> specs;
  for (const auto& version : versions_) {
    if (version->phase == phase) specs.push_back(version->spec);
  }
  std::sort(specs.begin(), specs.end(), [](const SharedSpec& a, const SharedSpec& b) {
    return std::make_pair(a->config.name(), a->version) <
           std::make_pair(b->config.name(), b->version);
  });
  return specs;
}

void VersionTable::Count(ServedVersion& version, const internal::InferResult& result, int jobs) {
  ModelCounters& counters = version.counters;
  counters.requests += jobs;
  ++counters.calls;
  if (!result.has_ran_as()) {  // refused before running
    counters.over_budget += result.code() == static_cast<int>(absl::StatusCode::kResourceExhausted);
    return;
  }
  counters.cold_shape_hits += result.cold_shape() ? jobs : 0;
  counters.padded_to_bucket +=
      result.unpadded_length() > 0 && result.unpadded_length() < result.ran_as().sequence_length();
  counters.split += result.chunks() > 1;
  counters.padded_batch += result.padded_rows() > 0;
}

ModelCounters VersionTable::Counters(const std::string& name, int64_t number) const {
  ModelCounters sum;
  for (const ServedVersion* version : Match(name, number)) {
    const ModelCounters& one = version->counters;
    sum.requests += one.requests;
    sum.calls += one.calls;
    sum.cold_shape_hits += one.cold_shape_hits;
    sum.padded_to_bucket += one.padded_to_bucket;
    sum.split += one.split;
    sum.over_budget += one.over_budget;
    sum.padded_batch += one.padded_batch;
  }
  return sum;
}

void VersionTable::ResetCounters() {
  for (const auto& version : versions_) version->counters = ModelCounters();
}

void VersionTable::BeginStaging(int generation) {
  staging_generation_ = generation;
  staging_failed_ = absl::OkStatus();
}

bool VersionTable::FailStaging(const absl::Status& why) {
  if (staging_generation_ == 0 || !staging_failed_.ok()) return false;
  staging_failed_ = why;
  return true;
}

VersionTable::Staging VersionTable::StagingState(bool stopping) const {
  Staging staging;
  staging.staging = staging_generation_ != 0;
  staging.failed = staging_failed_;
  staging.ready = staging.staging && staging_failed_.ok();
  std::vector<std::string> parts;
  for (const auto& version : versions_) {
    if (version->phase != VersionPhase::kStaged) continue;
    const ModelReadiness readiness = Readiness(*version, stopping);
    staging.ready = staging.ready && readiness.serving;
    parts.push_back(
        absl::StrCat(version->spec->key(), " ", readiness.warm, "/", readiness.workers, " warm"));
  }
  staging.summary = absl::StrJoin(parts, ", ");
  return staging;
}

int VersionTable::Commit(const std::vector<SharedSpec>& retire) {
  for (const auto& version : versions_) {
    if (version->phase == VersionPhase::kStaged) {
      version->phase = VersionPhase::kLive;
      version->counters = ModelCounters();  // the readiness check's requests are not serving
      LOG(INFO) << "reload: " << version->spec->key() << " (generation " << version->generation
                << ") is live";
    }
  }
  for (const SharedSpec& spec : retire) {
    ServedVersion* version = Find(spec.get());
    if (version == nullptr || version->phase != VersionPhase::kLive) continue;
    version->phase = VersionPhase::kRetiring;
    version->missing_slots.clear();
    LOG(INFO) << "reload: " << version->spec->key() << " (generation " << version->generation
              << ") is retiring: it finishes its calls, then its workers leave";
  }
  const int staged = staging_generation_;
  staging_generation_ = 0;
  staging_failed_ = absl::OkStatus();
  return staged;
}

std::vector<InferJob> VersionTable::DropStaged() {
  std::vector<InferJob> jobs;
  for (const auto& version : versions_) {
    if (version->phase != VersionPhase::kStaged) continue;
    for (InferJob& job : version->queue->TakeAll()) jobs.push_back(std::move(job));
  }
  versions_.erase(
      std::remove_if(versions_.begin(), versions_.end(),
                     [](const auto& version) { return version->phase == VersionPhase::kStaged; }),
      versions_.end());
  staging_generation_ = 0;
  return jobs;
}

bool VersionTable::GenerationUsed(int generation) const {
  return generation == staging_generation_ ||
         std::any_of(versions_.begin(), versions_.end(), [generation](const auto& version) {
           return version->generation == generation;
         });
}

}  // namespace kiln
