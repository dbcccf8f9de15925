// The readiness check (docs/ARCHITECTURE.md, "Startup timeline", Checking): before the public port
// opens, synthetic requests go through the whole request path (gRPC service, validation, queue,
// worker over its socket and arena, response encoding). It finds cold paths, not busy machines.
//
// What it sends is sized by what it must prove (readiness.check_requests 0, the default): every
// warmed path taken once, and every worker reached. One request at each shape every worker of
// the version warmed but the smallest, the largest first, and one at the smallest shape for each
// worker those leave (at least one), all sent at once so that each worker takes one; each its own
// call, even under dynamic batching (CheckServiceOptions). Every version is checked at the same
// time, each by as many senders as it has workers. An explicit check_requests N sends N requests
// at the smallest shape instead.
//
// A check that fails is tried again, up to three attempts (Master::CheckVersions), each sending
// its requests more times over: attempt k sends them in 2k - 1 rounds (1, 3, 5), and each shape
// is judged by the median over all its calls. A cold path pays in every call, so it fails every
// attempt; a lone call that a noisy machine stretched (measured: one call of textcls at batch 1
// cost 199 ms of CPU time against 1.6 ms steady, once in 170 starts beside busy loops, a disk
// writer or a memory streamer) fails at most the first, and is outvoted in the next. The likely
// source, in workers of several intra-op threads: OpenBLAS's threaded GEMM, whose threads wait
// for each other in sched_yield() loops (strace: 16 per textcls call in a quiet worker), so
// while one of them waits for a CPU the other spends CPU time yielding. (With the same library,
// PyTorch's textcls at 2 threads on a quiet machine: 3 to 8 of 3000 calls over 10 ms of CPU time,
// mostly system time, against a 1.7 ms median.)
//
// Each call's CPU time in its worker (which a neighbour taking turns on the core does not
// stretch) is judged against the warmup's steady CPU time for the shape it ran as (returned
// with the timing, kRanAsBatchParameter): per shape, the median of its calls must be within
// max_p95_factor x a reference CPU time + check_allowance_ms (times the workers' intra-op
// threads: a worker of several is measured by its whole process's CPU time, whose noise grows
// with its threads). The reference is the median itself, kept between the steady CPU time and
// kMaxCheckSlowdown x it; so a shape fails when its typical call costs more than
// max_p95_factor x kMaxCheckSlowdown x steady (3.75x by default) + the allowance. On a VM whose
// vCPUs share cores, busy neighbours make calls take 2.1-2.25x the CPU time (measured beside
// busy loops), some or all of them: within the limit, so one call per shape is enough. A path
// that never warms (the demo models' first calls of their smallest shape cost 7x to 500x their
// steady time) pays in every call and fails. Any error, or a call that ran as a cold shape,
// fails it too. The CPU p95 and the wall-clock p95 are reported beside.
//
// The check runs through a private gRPC server (no port). The port's own server is another one,
// whose first inference request costs a worker of several intra-op threads more than any later
// one: measured on resnet50, 1 worker of 2 threads, 2 vCPUs, its threads waited 6-30 ms for a CPU
// during it (0.1-5 ms during requests sent after the same pause), so it took 1.08x their wall
// time for the same CPU time (median of 12 starts). So the port's server is primed before it says
// SERVING (PrimeServingPath): then 0.0-1.8 ms and 0.97x.
#ifndef KILN_SERVER_FRONT_READINESS_CHECK_H_
#define KILN_SERVER_FRONT_READINESS_CHECK_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config_loader.h"
#include "common/shape.h"
#include "proto/grpc_service.grpc.pb.h"
#include "server/front/inference_service.h"
#include "server/front/text_tokens.h"
#include "server/supervisor/worker_pool.h"

namespace kiln {

// How much slower than the warmup's steady CPU time the check's median may run and still be its
// own reference: a busy node's slowdown, not a cold path.
inline constexpr double kMaxCheckSlowdown = 2.5;

// The reference CPU time of a check whose calls' median CPU time is `median_cpu_ms`: that median,
// kept within [steady_cpu_ms, kMaxCheckSlowdown x steady_cpu_ms].
double ReferenceCpuMs(double median_cpu_ms, double steady_cpu_ms);

// One shape's calls in a check, judged.
struct ShapeCheck {
  Shape ran_as;
  int calls = 0;
  double cpu_median_ms = 0;
  double steady_cpu_ms = 0;     // the warmup's, the median over the version's workers
  double reference_cpu_ms = 0;  // ReferenceCpuMs(cpu_median_ms, steady_cpu_ms)
  double limit_ms = 0;          // factor x reference_cpu_ms + allowance_ms
  bool passed() const { return cpu_median_ms <= limit_ms; }
};

struct ReadinessResult {
  std::string model;  // ModelSpec::key()
  int requests = 0;
  int rounds = 1;  // the requests were the same set sent this many times
  int errors = 0;
  int workers = 0;                 // of the version, when the check began
  int workers_reached = 0;         // how many of them answered a call (by pid)
  std::vector<ShapeCheck> shapes;  // by shape, as they ran
  double p95_ms = 0;            // wall clock, through the whole path (reported, not judged)
  double cpu_p95_ms = 0;        // the workers' CPU time per call, p95 (reported)
  // The shape nearest its limit (the largest median / limit): its median, steady, reference and
  // limit, which the log and the metrics show.
  Shape worst;
  double cpu_median_ms = 0;
  double steady_cpu_ms = 0;
  double reference_cpu_ms = 0;
  double factor = 0;        // readiness.max_p95_factor
  double allowance_ms = 0;  // readiness.check_allowance_ms x the workers' intra-op threads
  double limit_ms = 0;
  std::string first_error;
  std::string
      skipped;  // why the model was not checked (warmup off, no synthetic data); "" if it was
  // Why the CPU time was not judged (only errors were): its workers' OpenMP threads spin while
  // they wait, so their CPU time grows when a neighbour takes the cores. "" when it was judged.
  std::string not_judged;

  bool passed() const {
    return !skipped.empty() || (errors == 0 && (!not_judged.empty() || cpu_median_ms <= limit_ms));
  }
  // "resnet50:1: 3 requests through the whole path on 2 of 2 workers (b1 x2, b4 x1), compute CPU
  // median 452.10 ms <= limit 679.15 ms at b4 (1.5 x reference CPU 452.10 ms + 1.0 ms; steady
  // 448.00 ms), CPU p95 452.10 ms; wall p95 460.33 ms: passed"; a retry's "9 requests in 3
  // rounds through ...".
  std::string Describe() const;
};

// The options of the InferenceService the check's private server runs: the Staged versions' (a
// reload's) with `staged`; text requests' tokens counted with `text_tokens` (the port's, so that
// the check loads a reloaded version's tokenizer); neither counted in the metrics nor recorded;
// and every request its own call (`unbatched`), so that under dynamic batching too each check
// request takes its own shape through a worker of its own.
InferenceServiceOptions CheckServiceOptions(bool staged, TextTokens* text_tokens);

// Checks every served version (`specs`) at once, as the header says: each its requests (seeded
// data; a text model's sample text aimed at each shape's length), readiness.check_concurrency (0:
// as many as its workers) at a time, through `stub` (an in-process channel to the service),
// asking for their timing (kTimingParameter). `workers` gives the versions' workers, their
// warmed shapes and their steady CPU times from the warmup reports. With `threads_spin`
// (OpenMpThreadsSpin()), a model whose workers run more than one intra-op thread is judged on
// errors only, and says so: spinning makes its CPU time depend on the load around. A model is
// skipped (and says why) when its warmup is off (`warmup` false: the
// --warmup=off baseline must stay cold, or warmup.enabled false) or its inputs cannot be
// generated (BYTES). Each version's requests are sent in `rounds` rounds, one after the other,
// and each shape judged by the median over all its calls. Only building a request can fail; a
// failed check is a result.
absl::StatusOr<std::vector<ReadinessResult>> RunReadinessCheck(
    inference::GRPCInferenceService::Stub& stub, const std::vector<SharedSpec>& specs,
    const std::vector<WorkerInfo>& workers, bool warmup, bool threads_spin = false, int rounds = 1);

// How many rounds the readiness check's attempt `attempt` (1, 2, 3) sends: 2 x attempt - 1, so
// that each retry's medians outvote one more stretched call.
int ReadinessRounds(int attempt);

// Primes the port's request path before it says SERVING (the header says why): one request per
// served version (`specs`), at the smallest shape all its workers warmed, all at once, through
// `stub` (an in-process channel to the port's own server), not judged. Skips what the check
// skips: versions not warmed (`warmup` false, or warmup.enabled false: the --warmup=off baseline
// stays cold) and inputs that cannot be generated. Returns how many requests it sent, or why one
// could not be built or failed.
absl::StatusOr<int> PrimeServingPath(inference::GRPCInferenceService::Stub& stub,
                                     const std::vector<SharedSpec>& specs,
                                     const std::vector<WorkerInfo>& workers, bool warmup);

}  // namespace kiln

#endif  // KILN_SERVER_FRONT_READINESS_CHECK_H_
