// The server's Prometheus metrics (docs/ARCHITECTURE.md, "Metrics"; docs/metrics.md lists each one):
// Triton's names and labels (model, version) for what Triton has, kiln_ for the rest.
//
// Three kinds of source, so that a scrape never waits on a request and a request never waits on
// a scrape:
// - events, recorded where they happen into prometheus-cpp counters and histograms (atomics; a
//   histogram's own short mutex): each request once when it finishes (VersionMetrics), a worker
//   that died and its respawn, the startup phases, the readiness check;
// - state, read when scraped (PoolStateCollector, server/metrics/pool_metrics.h): workers by state,
// the
//   warmup report of each current worker, queue lengths, budgets;
// - memory, sampled by its own thread every few seconds (MemorySampler,
// server/metrics/memory_sampler.h),
//   never on a scrape.
//
// The series of a model version are never removed: a counter never goes backwards, also across a
// reload that replaces the version's files (the labels stay the same) and across worker deaths.
// Requests of the readiness check are not counted (its service has no metrics).
#ifndef KILN_SERVER_METRICS_METRICS_H_
#define KILN_SERVER_METRICS_METRICS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace kiln {

// Triton's `reason` label of nv_inference_request_failure.
enum class FailureReason {
  // refused by the scheduler, never run: its queue was full, it timed out in the queue at a REJECT
  // level, the server stopped or its version's workers were gone while it waited
  kRejected,
  kCanceled,  // the client's deadline passed (while queued or running) or the client cancelled
  kBackend,   // the worker failed it: the model raised, the worker died or hung, over budget
  kOther,     // anything else: an invalid request, a response that could not be encoded
};
const char* FailureReasonName(FailureReason reason);

// Where a failed request's status came from, for ClassifyFailure.
enum class FailureStage {
  kAdmission,  // routing, decoding or queueing, before any worker had it
  kQueue,      // the pool's outcome for a job that ended in the queue (InferOutcome::never_sent)
  kOutcome,    // the pool's outcome for a job a worker had
  kResponse,   // encoding the response
};
FailureReason ClassifyFailure(FailureStage stage, const absl::Status& status);

// One finished request's numbers, in microseconds (Triton's unit).
struct RequestRecord {
  int64_t rows = 1;            // the request's batch rows (1 for a model without a batch dim)
  // Forward passes (more than 1 when split to fit the memory budget): the call's, given with only
  // one of a dynamic batch's requests (0 for the others), as are padded_rows and call_rows.
  int executions = 0;
  int64_t call_rows = 0;       // the rows of the call that ran it (its batch); 0: not counted here
  double total_us = 0;         // from the RPC's arrival until its response was finished
  double queue_us = 0;         // queued until sent to a worker
  double input_us = 0;         // decoding, copying into the worker's arena, tokenizing
  double infer_us = 0;         // the forward passes in the worker
  double output_us = 0;        // copying out of the arena, encoding the response
  double tokenize_us = -1;     // the worker's tokenizing of a text request; < 0 when there was none
  bool cold_shape = false;     // the shape was not warmed by the worker that ran it
  int padded_rows = 0;         // rows of zeros added to reach a warmed batch size
  bool padded_length = false;  // text padded up to a longer warmed sequence length
};

// The request counters of one model version. Ownership: ServerMetrics owns it (for the life of
// the process). Thread-safety: every method may be called from any thread; only atomics and the
// histograms' own mutexes are touched.
class VersionMetrics {
 public:
  void Succeeded(const RequestRecord& record);
  void Failed(FailureReason reason);

 private:
  friend class ServerMetrics;
  VersionMetrics() = default;

  prometheus::Counter* success_ = nullptr;
  prometheus::Counter* failure_[4] = {};  // by FailureReason
  prometheus::Counter* count_ = nullptr;
  prometheus::Counter* exec_count_ = nullptr;
  prometheus::Counter* request_us_ = nullptr;
  prometheus::Counter* queue_us_ = nullptr;
  prometheus::Counter* input_us_ = nullptr;
  prometheus::Counter* infer_us_ = nullptr;
  prometheus::Counter* output_us_ = nullptr;
  prometheus::Histogram* latency_ = nullptr;
  prometheus::Histogram* tokenize_ = nullptr;
  prometheus::Histogram* batch_ = nullptr;
  prometheus::Histogram* call_batch_ = nullptr;
  prometheus::Counter* cold_shapes_ = nullptr;
  prometheus::Counter* padded_rows_ = nullptr;
  prometheus::Counter* padded_length_ = nullptr;
  prometheus::Counter* split_ = nullptr;
};

// One process of the server tree, for the memory gauges.
struct ProcessMemorySample {
  std::string role;     // "master", "zygote", "template", "worker"
  std::string model;    // workers: the model's name; "" otherwise
  std::string version;  // workers: the version; "" otherwise
  // The label `id`: workers: the slot (also the label `slot` of their headroom); zygotes: the
  // generation; others: the pid. (Not `instance`: Prometheus gives that to the scraped target.)
  std::string id;
  int64_t pss_bytes = 0;
  int64_t private_bytes = 0;
  int64_t shared_bytes = 0;
  int64_t budget_bytes = 0;  // workers: their memory budget (0 = none)
};

// The latency buckets of kiln_request_duration_seconds, from 0.1 ms to 10 s.
std::vector<double> RequestLatencyBuckets();

// What kiln_build_info says: the versions this binary was built with (the master fills it; the
// metrics library links neither gRPC nor LibTorch). A value.
struct BuildInfo {
  std::string kiln;
  std::string grpc;
  std::string libtorch;
};

// Ownership: owns the registry and every metric in it; the collectables added with AddCollector
// are shared with their owners. Thread-safety: every method may be called from any thread.
class ServerMetrics {
 public:
  explicit ServerMetrics(const BuildInfo& build);

  // The counters of `model` version `version`, made on first use and kept for the process's
  // life; the reference stays valid.
  VersionMetrics& Version(const std::string& model, int64_t version);

  // A worker of `model`:`version` that died (not one scaled away or retired), to be replaced.
  void WorkerDied(const std::string& model, int64_t version);
  // A replacement became ready `seconds` after its predecessor died.
  void WorkerRespawned(const std::string& model, int64_t version, double seconds);
  // A worker started for `cause` ("start", "respawn", "scale_up", "reload": WorkerStartName) became
  // ready: its two phases, fork (from the spawn command until it was forked) and warm (then until
  // its warmup report).
  void WorkerStartPhases(const std::string& model, int64_t version, const std::string& cause,
                         double fork_seconds, double warm_seconds);
  // A reload's phase ("plan", "start_zygote", "warm", "readiness_check", "switch"), of the last
  // reload that reached it.
  void ReloadPhase(const std::string& phase, double seconds);

  // A startup phase: `phase` is a stable name ("read_repository", "load_model", ...); `model` and
  // `version` are "" for the phases of the whole server.
  void StartupPhase(const std::string& phase, const std::string& model, const std::string& version,
                    double seconds);
  // The port opened `seconds` after the process started.
  void Serving(double seconds_since_start);

  // A readiness check of `model`:`version` (ReadinessResult's numbers, in milliseconds).
  struct ReadinessNumbers {
    double p95_ms = 0;
    double cpu_p95_ms = 0;
    double cpu_median_ms = 0;  // what the check judges against the limit
    double limit_ms = 0;
    bool passed = false;
  };
  void ReadinessChecked(const std::string& model, int64_t version, const ReadinessNumbers& check);

  // Replaces the memory gauges with `processes` (one sample of the whole tree); a process that is
  // gone has no series any more.
  void SampledMemory(const std::vector<ProcessMemorySample>& processes, int64_t limit_bytes);

  // Adds what a scrape collects besides the registry (state read when scraped).
  void AddCollector(std::shared_ptr<prometheus::Collectable> collector);

  // The text exposition format 0.0.4 of everything.
  std::string Render() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();

  // nv_inference_* and kiln_ request families (VersionMetrics points into them).
  prometheus::Family<prometheus::Counter>& success_;
  prometheus::Family<prometheus::Counter>& failure_;
  prometheus::Family<prometheus::Counter>& count_;
  prometheus::Family<prometheus::Counter>& exec_count_;
  prometheus::Family<prometheus::Counter>& request_us_;
  prometheus::Family<prometheus::Counter>& queue_us_;
  prometheus::Family<prometheus::Counter>& input_us_;
  prometheus::Family<prometheus::Counter>& infer_us_;
  prometheus::Family<prometheus::Counter>& output_us_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Family<prometheus::Histogram>& tokenize_;
  prometheus::Family<prometheus::Histogram>& batch_;
  prometheus::Family<prometheus::Histogram>& call_batch_;
  prometheus::Family<prometheus::Counter>& cold_shapes_;
  prometheus::Family<prometheus::Counter>& padded_rows_;
  prometheus::Family<prometheus::Counter>& padded_length_;
  prometheus::Family<prometheus::Counter>& split_;
  // Workers.
  prometheus::Family<prometheus::Counter>& restarts_;
  prometheus::Family<prometheus::Histogram>& respawn_;
  prometheus::Family<prometheus::Histogram>& worker_start_phase_;
  prometheus::Family<prometheus::Gauge>& reload_phase_;
  // Startup and readiness.
  prometheus::Family<prometheus::Gauge>& startup_phase_;
  prometheus::Family<prometheus::Gauge>& time_to_serving_;
  prometheus::Family<prometheus::Gauge>& readiness_p95_;
  prometheus::Family<prometheus::Gauge>& readiness_cpu_p95_;
  prometheus::Family<prometheus::Gauge>& readiness_cpu_median_;
  prometheus::Family<prometheus::Gauge>& readiness_limit_;
  prometheus::Family<prometheus::Gauge>& readiness_passed_;
  // Memory, replaced by each sample.
  prometheus::Family<prometheus::Gauge>& process_pss_;
  prometheus::Family<prometheus::Gauge>& process_private_;
  prometheus::Family<prometheus::Gauge>& process_shared_;
  prometheus::Family<prometheus::Gauge>& worker_headroom_;
  prometheus::Family<prometheus::Gauge>& tree_pss_;
  prometheus::Family<prometheus::Gauge>& memory_limit_;

  // Taken by a request only to find its version's counters (a map lookup); nothing else holds it.
  absl::Mutex versions_mu_;
  std::map<std::pair<std::string, int64_t>, std::unique_ptr<VersionMetrics>> versions_
      ABSL_GUARDED_BY(versions_mu_);
  mutable absl::Mutex mu_;
  // The memory gauges of the last sample, with their families.
  std::vector<std::pair<prometheus::Family<prometheus::Gauge>*, prometheus::Gauge*>> memory_gauges_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<prometheus::Collectable>> collectors_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln

#endif  // KILN_SERVER_METRICS_METRICS_H_
