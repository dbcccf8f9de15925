// The per-worker memory budget: how many bytes a worker may use (WorkerBudgetBytes), how much a
// forward pass of a larger shape will take judging by the smaller ones measured in warmup
// (ShapeMemoryModel), and whether the memory has room for more workers (CheckRoomForWorkers).
// Pure arithmetic: the measurements come from common/memory_probe.h.
#ifndef KILN_COMMON_MEMORY_BUDGET_H_
#define KILN_COMMON_MEMORY_BUDGET_H_

#include <cstdint>
#include <limits>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "proto/model_config.pb.h"

namespace kiln {

// The bytes one worker may hold at its peak:
//   config.limit_bytes()                                    when > 0, else
//   share x limit_bytes / total_workers                     share = config.cgroup_share(), or
//                                                           kDefaultCgroupShare (0.8) when 0,
// minus config.headroom_bytes() in both cases, and never below 0. `limit_bytes` is the memory
// the whole server lives under (MemoryLimit::bytes: the cgroup's limit, else physical memory);
// `total_workers` counts every worker of every model sharing it (values < 1 count as 1).
int64_t WorkerBudgetBytes(const MemoryConfig& config, int64_t limit_bytes, int total_workers);

// The size of a shape for the memory model: max(batch, 1) x max(sequence_length, 1) (batch 0 is a
// model without a batch dimension; sequence length 0 a model without a sequence dimension).
int64_t ShapeUnits(int64_t batch, int64_t sequence_length);

// Projects the peak resident bytes of a forward pass on a shape of `units` (ShapeUnits) from the
// peaks measured on smaller shapes, so warmup can refuse a shape before running it. Warmup runs
// its shapes from smallest to largest, resets the peak (ResetPeakResident) before each, Add()s
// the peak after it, and asks Projected() of the next shape before running that one.
//
// The model, conservative on purpose (a refused shape costs a slower batch; an OOM kill costs the
// worker and every request in it):
//   - The envelope E: at each measured size u_i, the largest of the baseline and every peak
//     measured at sizes <= u_i. It never decreases, so neither does the projection, even when
//     the allocator happened to return memory between two measurements.
//   - No measurement: the baseline (the resident bytes before warmup) for every size.
//   - units <= 0: the baseline.
//   - 0 < units <= the largest measured size: E at the smallest measured size >= units. A shape
//     between two measured ones is costed as the larger, which bounds it (peaks grow with the
//     shape), rather than interpolated between them.
//   - Above the largest measured size u_n: E(u_n) + slope x (units - u_n), rounded up, where slope
//     is the steepest of the slopes between consecutive measured peaks (with one measurement: from
//     the baseline at 0 units to it, which also carries the first pass's fixed costs, so it
//     over-estimates), and never negative. The steepest, not the last or a fit: activation memory
//     is close to linear in the shape, and a budget must not rely on the curve flattening.
// Saturates at INT64_MAX ("that or more", which fits no budget) rather than overflowing.
//
// Ownership: a value type; the warmup that measures owns it. Thread-safety: none; const methods
// may be called concurrently when nothing calls Add.
class ShapeMemoryModel {
 public:
  // What MaxUnitsWithin returns when no size is too large (the slope is 0).
  static constexpr int64_t kUnbounded = std::numeric_limits<int64_t>::max();

  explicit ShapeMemoryModel(int64_t baseline_bytes) : baseline_bytes_(baseline_bytes) {}

  // Records the peak measured for a shape of `units` (> 0; other sizes are ignored and logged).
  // Measuring a size again keeps the larger peak.
  void Add(int64_t units, int64_t peak_bytes);

  // The projected peak resident bytes for a shape of `units`, as described above.
  int64_t Projected(int64_t units) const;

  // The largest units with Projected(units) <= budget_bytes: kUnbounded when every size fits (no
  // measurement, or a slope of 0, with the projection within the budget); 0 when no size > 0
  // fits.
  int64_t MaxUnitsWithin(int64_t budget_bytes) const;

  // Bytes per unit above the largest measured size (0 without measurements).
  double Slope() const;

  int64_t baseline_bytes() const { return baseline_bytes_; }
  // Measured sizes and their peaks (the larger peak where a size was measured twice).
  const std::map<int64_t, int64_t>& peaks() const { return peaks_; }

 private:
  // E at the largest measured size; peaks_ must not be empty.
  int64_t EnvelopeAtLargest() const;

  int64_t baseline_bytes_;
  std::map<int64_t, int64_t> peaks_;  // units -> peak resident bytes
};

// What admitting `count` more workers of one model would bring the memory to: what the kernel
// counts now, what the workers still warming may add, each new worker's cost and the model's
// headroom. A worker's own budget (for refusing shapes) is not a share reserved here.
struct WorkerAdmission {
  int64_t usage_bytes = 0;
  std::string usage_source;   // e.g. "the cgroup's working set (memory.current - inactive_file)"
  int64_t pending_bytes = 0;  // reserved for the workers still spawning or warming
  int pending_workers = 0;
  int count = 1;  // new workers
  int64_t per_worker_bytes = 0;
  bool measured = false;       // per_worker_bytes is a warm worker's measured private peak
  int64_t headroom_bytes = 0;  // memory.headroom_bytes: kept free
};

// OK when usage + pending + count x per_worker + headroom fits within `limit_bytes`;
// ResourceExhausted otherwise, with every term in MB in the message.
absl::Status CheckRoomForWorkers(const WorkerAdmission& admission, int64_t limit_bytes);

}  // namespace kiln

#endif  // KILN_COMMON_MEMORY_BUDGET_H_
