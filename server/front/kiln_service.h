// kiln.KilnService (proto/kiln_service.proto) on the public port: the startup timeline, every
// worker's warmup report and the serving counters, for operators and `kiln-bench warmup`; and
// setting a model's worker count at runtime (`kiln-bench scale`).
#ifndef KILN_SERVER_FRONT_KILN_SERVICE_H_
#define KILN_SERVER_FRONT_KILN_SERVICE_H_

#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/model_config_loader.h"
#include "common/shape.h"
#include "proto/kiln_service.grpc.pb.h"
#include "server/supervisor/cpu_setup.h"
#include "server/supervisor/worker_pool.h"

namespace kiln {

// What the master knew when it opened the port, beside what the pool knows.
struct StartupReport {
  std::vector<StartupPhase> timeline;
  std::string memory_limit = "unknown";
  CpuSetup cpu;
  std::map<std::string, std::vector<Shape>> replayed;  // by model
};

// Ownership: borrows the pool, which must outlive it (and the grpc::Server it is
// registered with); owns a copy of the startup report. Thread-safety: gRPC calls it from any of
// its threads; the timeline is guarded by mu_ (the pool is thread-safe).
class KilnServiceImpl final : public KilnService::CallbackService {
 public:
  KilnServiceImpl(WorkerPool& pool, StartupReport startup);

  // Replaces the startup timeline (the master adds its last phase once the port is open).
  void SetTimeline(std::vector<StartupPhase> timeline);

  grpc::ServerUnaryReactor* WarmupReport(grpc::CallbackServerContext* context,
                                         const WarmupReportRequest* request,
                                         WarmupReportResponse* response) override;
  grpc::ServerUnaryReactor* SetWorkerCount(grpc::CallbackServerContext* context,
                                           const SetWorkerCountRequest* request,
                                           SetWorkerCountResponse* response) override;

 private:
  WorkerPool& pool_;
  mutable absl::Mutex mu_;
  StartupReport startup_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln

#endif  // KILN_SERVER_FRONT_KILN_SERVICE_H_
