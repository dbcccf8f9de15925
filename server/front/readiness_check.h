// The readiness check (docs/ARCHITECTURE.md, "Startup timeline", Checking): before the public port
// opens, a short synthetic load goes through the whole request path (gRPC service, validation,
// queue, worker over its socket and arena, response encoding). It finds cold paths, not busy
// machines. Each call's CPU time in its worker (which a neighbour taking turns on the core does
// not stretch) is judged: the median must be within max_p95_factor x a reference CPU time +
// check_allowance_ms (times the workers' intra-op threads: a worker of several is measured by its
// whole process's CPU time, whose noise grows with its threads). The reference is the median
// itself, kept between the CPU time the warmup measured for that shape (steady) and
// kMaxCheckSlowdown x it; so the check fails when the typical call costs more than
// max_p95_factor x kMaxCheckSlowdown x steady (3.75x by default) + the allowance. Not the p95:
// on a VM whose vCPUs share cores, busy neighbours make some calls, in no order, take 2.1-2.25x
// the CPU time (measured beside busy loops), and sometimes every call. A path that never warms
// (the demo models' first calls of their smallest shape cost 7x to 500x their steady time) pays
// in every call and fails; a path cold only in its first calls is warmed by the check itself.
// Any error fails it too. The CPU p95 and the wall-clock p95 are reported beside.
// It also warms the master's side of the path, so the first real request does not pay for it.
#ifndef KILN_SERVER_FRONT_READINESS_CHECK_H_
#define KILN_SERVER_FRONT_READINESS_CHECK_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config_loader.h"
#include "proto/grpc_service.grpc.pb.h"
#include "server/supervisor/worker_pool.h"

namespace kiln {

// How much slower than the warmup's steady CPU time the check's median may run and still be its
// own reference: a busy node's slowdown, not a cold path.
inline constexpr double kMaxCheckSlowdown = 2.5;

// The reference CPU time of a check whose calls' median CPU time is `median_cpu_ms`: that median,
// kept within [steady_cpu_ms, kMaxCheckSlowdown x steady_cpu_ms].
double ReferenceCpuMs(double median_cpu_ms, double steady_cpu_ms);

struct ReadinessResult {
  std::string model;  // ModelSpec::key()
  int requests = 0;
  int errors = 0;
  double p95_ms = 0;            // wall clock, through the whole path (reported, not judged)
  double cpu_p95_ms = 0;        // the workers' CPU time per call, p95 (reported)
  double cpu_median_ms = 0;     // the workers' CPU time per call, median (judged)
  double steady_cpu_ms = 0;     // the warmup's steady CPU time for the checked shape (median)
  double reference_cpu_ms = 0;  // ReferenceCpuMs(cpu_median_ms, steady_cpu_ms)
  double factor = 0;            // readiness.max_p95_factor
  double allowance_ms = 0;      // readiness.check_allowance_ms x the workers' intra-op threads
  double limit_ms = 0;          // factor x reference_cpu_ms + allowance_ms
  std::string first_error;
  std::string
      skipped;  // why the model was not checked (warmup off, no synthetic data); "" if it was
  // Why the CPU time was not judged (only errors were): its workers' OpenMP threads spin while
  // they wait, so their CPU time grows when a neighbour takes the cores. "" when it was judged.
  std::string not_judged;

  bool passed() const {
    return !skipped.empty() || (errors == 0 && (!not_judged.empty() || cpu_median_ms <= limit_ms));
  }
  // "mlp:1: 20 requests through the whole path, compute CPU median 0.04 ms <= limit 1.06 ms (1.5 x
  // reference CPU 0.04 ms + 1.0 ms; steady 0.04 ms), CPU p95 0.05 ms; wall p95 0.61 ms: passed".
  std::string Describe() const;
};

// Sends each served version (`specs`) its readiness.check_requests requests,
// readiness.check_concurrency at a time, at the plan's smallest shape (seeded data), through `stub`
// (an in-process channel to the service), asking for their timing (kTimingParameter), and compares
// the p95 of their CPU time with the limit. `workers` gives the steady CPU times from the warmup
// reports. With `threads_spin` (OpenMpThreadsSpin()), a model whose workers run more than one
// intra-op thread is judged on errors only, and says so: spinning makes its CPU time depend on the
// load around. A model is skipped (and says why) when its warmup is off (`warmup` false: the
// --warmup=off baseline must stay cold, or warmup.enabled false) or its inputs cannot be
// generated (BYTES). Only building a request can fail; a failed check is a result.
absl::StatusOr<std::vector<ReadinessResult>> RunReadinessCheck(
    inference::GRPCInferenceService::Stub& stub, const std::vector<SharedSpec>& specs,
    const std::vector<WorkerInfo>& workers, bool warmup, bool threads_spin = false);

}  // namespace kiln

#endif  // KILN_SERVER_FRONT_READINESS_CHECK_H_
