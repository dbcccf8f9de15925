#include "server/front/kiln_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace kiln {

KilnServiceImpl::KilnServiceImpl(WorkerPool& pool, StartupReport startup)
    : pool_(pool), startup_(std::move(startup)) {}

void KilnServiceImpl::SetTimeline(std::vector<StartupPhase> timeline) {
  absl::MutexLock lock(&mu_);
  startup_.timeline = std::move(timeline);
}

grpc::ServerUnaryReactor* KilnServiceImpl::WarmupReport(grpc::CallbackServerContext* context,
                                                        const WarmupReportRequest* request,
                                                        WarmupReportResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const std::vector<SharedSpec> served = pool_.Served();
  const bool known = request->model().empty() ||
                     std::any_of(served.begin(), served.end(), [&](const SharedSpec& spec) {
                       return spec->config.name() == request->model();
                     });
  if (!known) {
    reactor->Finish(
        ToGrpcStatus(absl::NotFoundError(absl::StrCat("unknown model '", request->model(), "'"))));
    return reactor;
  }
  std::map<std::string, std::vector<Shape>> replayed;
  {
    absl::MutexLock lock(&mu_);
    *response->mutable_timeline() = {startup_.timeline.begin(), startup_.timeline.end()};
    response->set_memory_limit(startup_.memory_limit);
    response->set_cpu_limit(startup_.cpu.limit);
    response->set_cpus(startup_.cpu.plan.cpus);
    response->set_thread_plan(startup_.cpu.plan.Describe());
    *response->mutable_thread_plan_warnings() = {startup_.cpu.plan.warnings.begin(),
                                                 startup_.cpu.plan.warnings.end()};
    response->set_openmp_wait(startup_.cpu.openmp_wait);
    response->set_warm_priority(startup_.cpu.warm_priority);
    replayed = startup_.replayed;
  }
  const std::vector<WorkerInfo> workers = pool_.Workers();
  for (const SharedSpec& spec : served) {
    const std::string& name = spec->config.name();
    const int64_t version = spec->version;
    if (!request->model().empty() && request->model() != name) continue;
    ModelWarmupReport& model = *response->add_models();
    model.set_model(name);
    model.set_version(version);
    model.set_worker_budget_bytes(pool_.BudgetBytes(name, version));
    auto shapes = replayed.find(name);
    if (shapes != replayed.end()) {
      for (const Shape& shape : shapes->second) *model.add_replayed() = ToProto(shape);
    }
    for (const WorkerInfo& worker : workers) {
      if (worker.model == name && worker.version == version &&
          (worker.state == WorkerState::kReady || worker.state == WorkerState::kBusy)) {
        *model.add_workers() = worker.warmup;
      }
    }
    const ModelReadiness readiness = pool_.Readiness(name, version);
    model.set_warm_workers(readiness.warm);
    model.set_target_workers(readiness.workers);
    model.set_min_ready(readiness.min_ready);
    model.set_serving(readiness.serving);
    model.set_degraded(readiness.degraded());
    const ModelCounters counters = pool_.Counters(name, version);
    ServingCounters& out = *model.mutable_counters();
    out.set_requests(counters.requests);
    out.set_cold_shape_hits(counters.cold_shape_hits);
    out.set_padded_to_bucket(counters.padded_to_bucket);
    out.set_split(counters.split);
    out.set_over_budget(counters.over_budget);
    out.set_padded_batch(counters.padded_batch);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* KilnServiceImpl::SetWorkerCount(grpc::CallbackServerContext* context,
                                                          const SetWorkerCountRequest* request,
                                                          SetWorkerCountResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Status set =
      pool_.SetWorkers(request->model(), request->workers(), request->version());
  if (set.ok()) {
    const ModelReadiness readiness = pool_.Readiness(request->model(), request->version());
    response->set_model(request->model());
    response->set_workers(readiness.workers);
    response->set_warm_workers(readiness.warm);
  }
  reactor->Finish(ToGrpcStatus(set));
  return reactor;
}

}  // namespace kiln
