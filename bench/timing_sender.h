// What the load of the scenarios that watch individual requests (`kiln-bench elastic`, `kiln-bench
// reload`) learns from each response: the "kiln_timing" parameters (server/codec/infer_codec.h:
// which worker ran it, its compute time, whether its shape was cold) and the version that answered;
// the sender that keeps them, and the warm workers' pids from the WarmupReport.
#ifndef KILN_BENCH_TIMING_SENDER_H_
#define KILN_BENCH_TIMING_SENDER_H_

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/load_generator.h"
#include "proto/grpc_service.grpc.pb.h"
#include "proto/kiln_service.grpc.pb.h"

namespace kiln::bench {

// What the server said about one request it served: the "kiln_worker_pid", "kiln_compute_ms",
// "kiln_compute_cpu_ms" and "kiln_cold_shape" response parameters that a request asking for
// "kiln_timing" gets (server/codec/infer_codec.h), and the version that answered.
struct RequestTiming {
  int64_t worker_pid = 0;     // 0: unknown (no response, an error, or no parameter)
  double compute_ms = -1;     // < 0: unknown
  double compute_cpu_ms = -1;  // the worker's CPU time for it; < 0: unknown
  bool cold_shape = false;    // "kiln_cold_shape": the worker had not warmed the shape
  std::string model_version;  // the response's model_version ("" for no response)
};
// The timing parameters of `response` (zero / -1 / false for each that is missing) and its
// model_version.
RequestTiming TimingOfResponse(const inference::ModelInferResponse& response);

// Lines up `sends` (one per request handed to the sender, in the order they were handed over)
// with `records` (RunLoad's, in scheduling order): in an open loop the sender gets every record
// that was not dropped at the client cap, in order. The result has one entry per record (default
// for a dropped one). An InvalidArgument when the counts disagree (a sender that saw warmup
// requests, say).
absl::StatusOr<std::vector<RequestTiming>> JoinTimings(const std::vector<RequestRecord>& records,
                                                       const std::vector<RequestTiming>& sends);

// Sends the one prepared request with the gRPC callback API, as GrpcSender does, and keeps what
// each response says about its worker (RequestTiming), in the order of the Send calls.
// Ownership: borrows the stub and the request, which must outlive it; the destructor waits until
// every call it started completed (each has a deadline, so gRPC completes it by then).
// Thread-safety: thread-safe.
class TimingSender {
 public:
  TimingSender(inference::GRPCInferenceService::Stub* stub,
               const inference::ModelInferRequest* request, int64_t timeout_ms)
      : stub_(stub), request_(request), timeout_ms_(timeout_ms) {}
  ~TimingSender();
  TimingSender(const TimingSender&) = delete;
  TimingSender& operator=(const TimingSender&) = delete;

  // Starts one call; `done` gets its status exactly once, on a gRPC thread, after its timing was
  // kept.
  void Send(DoneFn done);

  // One entry per Send so far (default for a call that has not succeeded yet).
  std::vector<RequestTiming> Timings() const;

 private:
  struct Call {
    grpc::ClientContext context;
    inference::ModelInferResponse response;
    DoneFn done;
    size_t index = 0;
  };

  inference::GRPCInferenceService::Stub* const stub_;
  const inference::ModelInferRequest* const request_;
  const int64_t timeout_ms_;
  mutable std::mutex mu_;
  std::condition_variable idle_;
  std::vector<RequestTiming> timings_;  // GUARDED_BY(mu_)
  int64_t in_flight_ = 0;               // GUARDED_BY(mu_)
};

// The pids of `model`'s warm workers (every served version's), as its WarmupReport lists them
// (by worker id); Unavailable naming the RPC's error when the report cannot be had.
absl::StatusOr<std::vector<int64_t>> WarmWorkerPids(KilnService::Stub& stub,
                                                    const std::string& model);

}  // namespace kiln::bench

#endif  // KILN_BENCH_TIMING_SENDER_H_
