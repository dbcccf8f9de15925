// The metrics read when scraped (server/metrics/metrics.h): the master's state, and from the worker
// pool each version's workers by state, readiness, queue and memory budget, and each current
// worker's warmup report (first-call vs steady latency per shape: the startup's cold cost,
// measured).
#ifndef KILN_SERVER_METRICS_POOL_METRICS_H_
#define KILN_SERVER_METRICS_POOL_METRICS_H_

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/supervisor/master_state.h"
#include "server/supervisor/worker_pool.h"

namespace kiln {

// Ownership: borrows the pool and the master's state machine, which must outlive it (and any
// scrape). Thread-safety: Collect may be called from any thread; it holds the pool's lock only
// while the pool copies its numbers (WorkerPool::VersionStates and Workers), never while
// formatting or sending.
class PoolStateCollector : public prometheus::Collectable {
 public:
  PoolStateCollector(const WorkerPool& pool, const MasterStateMachine& master)
      : pool_(pool), master_(master) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const WorkerPool& pool_;
  const MasterStateMachine& master_;
};

// The families of `versions` and `workers` (what Collect builds from the pool), and the one-hot
// kiln_server_state of `state`. Pure: unit-tested with made-up states.
std::vector<prometheus::MetricFamily> PoolStateFamilies(MasterState state,
                                                        const std::vector<VersionState>& versions,
                                                        const std::vector<WorkerInfo>& workers);

}  // namespace kiln

#endif  // KILN_SERVER_METRICS_POOL_METRICS_H_
