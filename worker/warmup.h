// The warmup plan (docs/ARCHITECTURE.md, "Startup timeline", Warming): every batch size x sequence
// length of the config, `calls_per_shape` calls each (kNewPlanMinCalls at least where a shape
// runs on a new executor plan), on the thread and under the guard that will serve
// (TorchModel::Forward's grad mode and TorchScript switches), so the TorchScript profiling
// executor (which profiles on the first call and optimises on the second) and oneDNN's per-shape
// primitives are settled before the worker reports ready. A model with optional inputs settles
// every shape once more per combination of them left out (each is its own executor plan).
#ifndef KILN_WORKER_WARMUP_H_
#define KILN_WORKER_WARMUP_H_

#include <cstdint>
#include <functional>
#include <set>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/memory_budget.h"
#include "common/shape.h"
#include "common/tensor.h"
#include "common/warmup_inputs.h"
#include "proto/model_config.pb.h"
#include "proto/worker_frames.pb.h"
#include "worker/text_batch.h"
#include "worker/torch_model.h"

namespace kiln {

// How one shape is settled (the config's warmup fields).
struct SettlePlan {
  int min_calls = 3;   // calls before agreement is judged (calls_per_shape, PlanSettling)
  int max_calls = 50;  // cap on the settling phase (max_calls_per_shape)
  double tolerance = 0.15;
  int steady_calls = 2;  // calls whose median is the steady latency (the agreeing pair counts)
};

// The fewest calls before agreement is judged at a shape that runs on a new executor plan: the
// first shape a process warms (each combination of optional inputs left out with it), and every
// shape on a GPU, where TorchScript's fusers specialise the graph to each shape. The profiling
// executor profiles a plan on its first call and optimises it on its second, so those two can
// agree while both are cold (resnet50, batch 1, one thread: 277 ms of CPU time each, then 118 ms
// steady), and the third call is the first that shows the steady cost. On the CPU, where LibTorch
// fuses nothing by default, a later shape runs the plan already optimised: its own first-call
// costs (oneDNN's primitives for it, its first pages) fall on its first call, which then
// disagrees with the second, so calls_per_shape (2 by default) is enough there.
inline constexpr int kNewPlanMinCalls = 3;

// The settling plan of one shape from the config's warmup fields; `new_plan`: the shape runs on
// a new executor plan (kNewPlanMinCalls).
SettlePlan PlanSettling(const WarmupConfig& warmup, bool new_plan);

struct SettleResult {
  std::vector<CallTime> calls;  // every call, in order
  int settled_after = 0;        // calls until two in a row agreed; 0 = not within the cap
  CallTime first;
  CallTime steady;  // medians of the steady calls
};

// Calls `call` (one forward pass, returning its wall and CPU time) at least plan.min_calls times
// and until two consecutive CPU times agree within plan.tolerance (|a - b| <= tolerance x
// max(a, b)), at most plan.max_calls times. The steady latency is the median of
// plan.steady_calls calls: the two that agreed and as many more as that takes (all of them new
// when it did not settle within the cap). CPU time, not wall time, is judged: a busy neighbour
// stretches wall times at random but leaves the work a call does alone. The first error stops
// it.
absl::StatusOr<SettleResult> SettleShape(const std::function<absl::StatusOr<CallTime>()>& call,
                                         const SettlePlan& plan);

struct WarmupOptions {
  int64_t budget_bytes = 0;         // the worker's memory budget; 0 = none
  std::vector<Shape> replay;        // recorded traffic shapes, warmed on top of the plan
  EncodeFn tokenize;                // text models: the tokenizer (warmed, and feeds the shapes)
  // Recorded real requests (common/traffic_profile.h): a shape with one of exactly its inputs'
  // shapes warms on its data instead of generated data; a text model's shape warms on the
  // recorded texts that pad to its length (those with the nearest row count, cycled or cut to
  // its batch size) instead of sample text.
  const std::vector<std::vector<Tensor>>* samples = nullptr;
};

struct WarmupOutcome {
  std::vector<internal::ShapeWarmup> shapes;  // in the order run, refused ones included
  ShapeMemoryModel memory{0};                 // peaks measured per shape
  int64_t baseline_bytes = 0;                 // anonymous memory before the first shape
  // The tokenizer's warmup: sample texts of each warmed length.
  int32_t tokenizer_texts = 0;
  double tokenizer_first_ms = 0;
  double tokenizer_steady_ms = 0;
};

// Runs the plan on `model`, smallest shape first: before each shape its peak anonymous memory
// (ResidentMemory::PeakAnonBytes: the heap, not the shared weights' file pages) is
// projected from the shapes before it (ShapeMemoryModel); a shape projected over the budget is
// refused (reported, never run), and one that ran but peaked over it is reported refused too.
// Each shape that runs is settled (SettleShape, as PlanSettling plans it: the first shape that
// runs, and every shape on a GPU, on a new plan) under the serving guard, then again with each
// combination of the optional inputs left out (untimed in the outcome), with the peak
// memory reset before it and read after it. Its inputs are a recorded request of that shape when
// there is one (WarmupOptions::samples; ShapeWarmup.recorded_request); else, for text models
// (which warm their tokenizer on sample texts first), the token ids of sample text of that
// length; else generated (MakeWarmupInputs).
// FailedPrecondition when the worker's anonymous memory before warmup already exceeds the budget,
// or when no shape fits it (the worker could serve nothing); the first error of a forward pass
// stops it.
absl::StatusOr<WarmupOutcome> RunWarmup(TorchModel& model, const WarmupOptions& options);

// A worker forked from its model's warm template (worker/warm_template.h) confirms the template's
// warmup `warmed`: one call of the smallest shape that was not refused, and of every other one
// whose steady call costs at most 100 ms of CPU time (warmup.cc says why not the costlier ones),
// on the same inputs, which pays for the pages this process must copy on its first writes, and
// more (up to 5) while a call costs more CPU time than the template's steady one (within the
// settle tolerance): a pass may write pages the first did not; then one call per combination of
// optional inputs left out. Its outcome is `warmed` with from_template set on every shape, and
// each confirmed shape's first_ms/first_cpu_ms from its first call and its calls (0: not
// confirmed); the steady latencies and the memory model stay the template's. The first error
// stops it.
absl::StatusOr<WarmupOutcome> ConfirmWarmup(TorchModel& model, const WarmupOptions& options,
                                            const WarmupOutcome& warmed);

// A worker that warmed `warmed` (RunWarmup) on more than one intra-op thread and now runs one
// settles every shape it warmed again (SettleShape; the first as on a new plan, since a thread
// count of its own may take paths the others did not), on inputs made as RunWarmup makes them.
// Its outcome is `warmed` with each warmed shape's steady times and settled-after from this
// settling and its calls added; the first calls and the memory measured stay warmed's (the
// process's first passes: a later pass allocates nothing new, so its peak would be its baseline),
// and refused shapes are not run. The first error stops it.
absl::StatusOr<WarmupOutcome> ResettleWarmup(TorchModel& model, const WarmupOptions& options,
                                             const WarmupOutcome& warmed);

// A worker whose intra-op threads the CPU plan chose (WorkerOptions::intra_op_threads_automatic),
// warmed on more than one, tries one thread too when its median warmed shape's steady call took at
// most kOneThreadTrialMaxMs (wall time) on them, and all of them together at most
// kOneThreadTrialMaxTotalMs: the second warmup costs a few times that total. The median, not the
// slowest: where the worker's threads find fewer CPUs free than the plan counted (a busy
// neighbour; it warms at idle priority), a pass's threads wait for each other, and OpenBLAS's
// spin in sched_yield() loops meanwhile, so some short shapes' steady calls come out 10 to 30
// times their worth (measured: textcls, 1 worker x 2 threads beside another test, b4 s128 at
// 177 ms, 125 ms of CPU time, against 16-18 ms of CPU time in quiet starts, while the median shape
// took 12 ms): just where one thread serves better.
inline constexpr double kOneThreadTrialMaxMs = 50;
inline constexpr double kOneThreadTrialMaxTotalMs = 1000;

// The steady wall times of the shapes `outcome` warmed, added up.
double SteadyWallMs(const WarmupOutcome& outcome);

// Whether a worker that warmed `planned` on more than one intra-op thread tries one: it warmed a
// shape, the median of their steady calls (the upper one of an even count) took at most
// kOneThreadTrialMaxMs, and all together at most kOneThreadTrialMaxTotalMs.
bool TriesOneThread(const WarmupOutcome& planned);

// How much slower one intra-op thread may be than the planned ones and still be kept: a worker
// on one uses less CPU time for the same passes (no thread waits for another), and two steady
// calls per shape measure a sub-millisecond pass only to within about this much.
inline constexpr double kOneThreadMargin = 0.1;

// Whether that worker serves on one thread after settling `one` on it (ResettleWarmup): the same
// shapes warmed, and their steady calls add up to at most (1 + kOneThreadMargin) x their wall time
// on the planned threads. More threads split a pass's kernels, and each split costs an OpenMP fork
// and join that wakes threads which slept since the last: for a short pass that costs more than it
// saves (textcls, 1 worker on 2 vCPUs, kiln-bench coldstart: steady p50 2.1-2.4 ms on one thread,
// 3.0 ms on two; its worker's CPU time for the first request 0.96-1.03x the after-pause ones' on
// one, 1.31-1.34x on two).
bool KeepsOneThread(const WarmupOutcome& planned, const WarmupOutcome& one);

// How much higher the shapes a worker did not confirm (ConfirmWarmup's calls 0) peaked in
// anonymous memory than the highest it did confirm, as the template measured them (one baseline):
// what the worker's private peak will grow by once it serves them. 0 when it confirmed all.
int64_t UnconfirmedPeakGrowthBytes(const WarmupOutcome& outcome);

// The shapes of `outcome` that ran within the budget.
std::set<Shape> WarmedShapes(const WarmupOutcome& outcome);

}  // namespace kiln

#endif  // KILN_WORKER_WARMUP_H_
