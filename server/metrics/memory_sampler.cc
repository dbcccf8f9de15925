#include "server/metrics/memory_sampler.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "common/memory_probe.h"
#include "common/process.h"
#include "server/metrics/metrics_endpoint.h"

namespace kiln {

std::vector<ProcessMemorySample> ClassifyProcesses(pid_t master, const std::vector<pid_t>& tree,
                                                   const std::map<int, pid_t>& zygotes,
                                                   const std::vector<WorkerInfo>& workers,
                                                   std::vector<pid_t>* pids) {
  std::vector<ProcessMemorySample> samples;
  pids->clear();
  auto add = [&](pid_t pid, ProcessMemorySample sample) {
    samples.push_back(std::move(sample));
    pids->push_back(pid);
  };
  add(master, {"master", "", "", std::to_string(master)});
  for (const auto& [generation, pid] : zygotes) {
    add(pid, {"zygote", "", "", std::to_string(generation)});
  }
  for (const WorkerInfo& worker : workers) {
    if (worker.pid <= 0 || worker.state == WorkerState::kExited) continue;
    ProcessMemorySample sample{"worker", worker.model, std::to_string(worker.version),
                               std::to_string(worker.slot)};
    sample.budget_bytes = worker.warmup.budget_bytes();
    add(worker.pid, std::move(sample));
  }
  for (pid_t pid : tree) {
    if (std::find(pids->begin(), pids->end(), pid) != pids->end()) continue;
    const std::vector<std::string> stat = ProcStatFields(pid);
    // ProcStatFields puts field n of /proc/<pid>/stat at n - 3: the parent (field 4) at 1.
    const pid_t parent = stat.size() > 1 ? static_cast<pid_t>(std::atoi(stat[1].c_str())) : 0;
    bool under_zygote = false;
    for (const auto& [generation, zygote] : zygotes)
      under_zygote = under_zygote || parent == zygote;
    add(pid, {under_zygote ? "template" : "other", "", "", std::to_string(pid)});
  }
  return samples;
}

MemorySampler::MemorySampler(ServerMetrics& metrics, const WorkerPool& pool, int64_t limit_bytes,
                             std::chrono::milliseconds interval)
    : metrics_(metrics),
      pool_(pool),
      limit_bytes_(limit_bytes),
      interval_(interval) {
  thread_ = std::thread([this] {
    LowerThisThreadsPriority();
    do {
      SampleOnce();
    } while (!stop_.WaitForNotificationWithTimeout(absl::FromChrono(interval_)));
  });
}

MemorySampler::~MemorySampler() {
  stop_.Notify();
  thread_.join();
}

void MemorySampler::SampleOnce() {
  std::vector<pid_t> pids;
  std::vector<ProcessMemorySample> samples =
      ClassifyProcesses(getpid(), ProcessTree(getpid()), pool_.ZygotePids(), pool_.Workers(), &pids);
  std::vector<ProcessMemorySample> read;
  for (size_t i = 0; i < samples.size(); ++i) {
    const absl::StatusOr<ProportionalMemory> memory = ReadProportionalMemory(pids[i]);
    if (!memory.ok()) continue;  // gone since the list was made
    samples[i].pss_bytes = memory->pss_bytes;
    samples[i].private_bytes = memory->private_bytes;
    samples[i].shared_bytes = memory->shared_bytes;
    read.push_back(std::move(samples[i]));
  }
  metrics_.SampledMemory(read, limit_bytes_);
}

}  // namespace kiln
