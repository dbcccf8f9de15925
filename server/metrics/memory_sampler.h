// Samples the memory of every process of the server's tree (PSS, private, shared: smaps_rollup)
// into the metrics (ServerMetrics::SampledMemory) on a thread of its own, every few seconds, so
// that a scrape never reads /proc: reading a large process's smaps_rollup takes milliseconds.
#ifndef KILN_SERVER_METRICS_MEMORY_SAMPLER_H_
#define KILN_SERVER_METRICS_MEMORY_SAMPLER_H_

#include <sys/types.h>

#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "server/metrics/metrics.h"
#include "server/supervisor/worker_pool.h"

namespace kiln {

// The roles of the tree's processes, as ProcessMemorySample names them (without the memory):
// this process is the master, `zygotes` (by generation) are zygotes, `workers` are workers, a
// child of a zygote that is no worker is a template, anything else under the master "other".
// `tree` is the master's process tree (common/process.h ProcessTree).
std::vector<ProcessMemorySample> ClassifyProcesses(pid_t master, const std::vector<pid_t>& tree,
                                                   const std::map<int, pid_t>& zygotes,
                                                   const std::vector<WorkerInfo>& workers,
                                                   std::vector<pid_t>* pids);

// Ownership: borrows the metrics and the pool, which must outlive it; owns its thread.
// Thread-safety: constructed and destroyed on one thread; the sampling runs on its own.
class MemorySampler {
 public:
  // Samples at once, then every `interval` until destroyed (the zygotes and the workers as the
  // pool knows them).
  MemorySampler(ServerMetrics& metrics, const WorkerPool& pool, int64_t limit_bytes,
                std::chrono::milliseconds interval);
  ~MemorySampler();  // stops and joins the thread

  MemorySampler(const MemorySampler&) = delete;
  MemorySampler& operator=(const MemorySampler&) = delete;

 private:
  void SampleOnce();

  ServerMetrics& metrics_;
  const WorkerPool& pool_;
  const int64_t limit_bytes_;
  const std::chrono::milliseconds interval_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace kiln

#endif  // KILN_SERVER_METRICS_MEMORY_SAMPLER_H_
