// How many workers each model gets and how many intra-op threads each worker runs, sized to the
// CPUs the server really has (common/cpu_probe.h) instead of the node's core count.
//
// The rules (what docs/operating.md's "Threads, workers and the CPUs" explains with numbers):
//   - A count set explicitly (--workers, or instance_group.count) and a thread count set
//     explicitly (instance_group.intra_op_threads) are kept as they are. When they add up to more
//     threads than CPUs, the plan says so in `warnings`.
//   - Automatic worker counts (instance_group.count unset) favour one thread per worker and more
//     workers: the CPUs left after the explicit models are split evenly among the automatic ones
//     (the first ones get the remainder), each worker taking its explicit thread count or 1;
//     at least 1 worker per model. KIND_GPU models get one worker per listed GPU (or 1).
//     They also stop where memory does: with `memory_limit_bytes` and `worker_footprint_bytes`
//     known, automatic workers of all models together number at most
//     floor(kDefaultCgroupShare x memory_limit / worker_footprint) (still at least 1 per model),
//     taking workers away from the model that has most.
//   - Automatic thread counts (intra_op_threads unset) split the CPUs left after the explicit
//     thread counts evenly over the workers that have none, at least 1 each. So workers x
//     intra-op threads never exceed the CPUs unless explicit settings, or more models than CPUs,
//     ask for it.
//
// Ownership: values only. Thread-safety: PlanThreads is a pure function.
#ifndef KILN_COMMON_THREAD_PLAN_H_
#define KILN_COMMON_THREAD_PLAN_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/model_config_loader.h"

namespace kiln {

// One model's share.
struct ModelThreads {
  int workers = 1;
  int intra_op_threads = 1;
  bool automatic_workers = false;  // chosen by the plan, not configured
  bool automatic_threads = false;
};

struct ThreadPlan {
  int cpus = 1;  // what the plan was sized to
  std::map<std::string, ModelThreads> models;  // by ModelSpec::key(): each served version
  // Why the plan uses more threads than CPUs, or fewer workers than the CPUs would allow.
  std::vector<std::string> warnings;

  int TotalWorkers() const;
  int TotalThreads() const;  // workers x intra-op threads over every model
  // "2 CPUs: resnet50 2 workers (automatic) x 1 intra-op thread (automatic) = 2 threads".
  std::string Describe() const;
};

struct ThreadPlanInputs {
  int cpus = 1;               // CpuLimit::cpus, or --cpus
  int workers_per_model = 0;  // --workers; 0 = each model's instance_group.count (or automatic)
  int64_t memory_limit_bytes = 0;      // the server's memory limit; 0 = unknown (no cap)
  int64_t worker_footprint_bytes = 0;  // what one worker is reckoned to hold; 0 = no cap
};

// The plan for `specs` (each config's instance_group, resolved by LoadModelRepository).
ThreadPlan PlanThreads(const std::vector<ModelSpec>& specs, const ThreadPlanInputs& inputs);

}  // namespace kiln

#endif  // KILN_COMMON_THREAD_PLAN_H_
