#include "bench/timing_sender.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "bench/oip_client.h"
#include "server/codec/infer_codec.h"  // the kiln_timing parameters

namespace kiln::bench {
namespace {

constexpr int64_t kReportTimeoutMs = 2000;

}  // namespace

RequestTiming TimingOfResponse(const inference::ModelInferResponse& response) {
  const ComputeTiming timing = ReadTiming(response);
  return {timing.worker_pid.value_or(0), timing.compute_ms.value_or(-1),
          timing.compute_cpu_ms.value_or(-1), timing.cold_shape, response.model_version()};
}

absl::StatusOr<std::vector<RequestTiming>> JoinTimings(const std::vector<RequestRecord>& records,
                                                       const std::vector<RequestTiming>& sends) {
  std::vector<RequestTiming> joined(records.size());
  size_t next = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].code == kDroppedClientCap) continue;
    if (next >= sends.size()) break;
    joined[i] = sends[next++];
  }
  const size_t sent =
      static_cast<size_t>(std::count_if(records.begin(), records.end(), [](const RequestRecord& r) {
        return r.code != kDroppedClientCap;
      }));
  if (sent != sends.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the sender saw ", sends.size(), " requests, but the load sent ", sent));
  }
  return joined;
}

TimingSender::~TimingSender() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_.wait(lock, [&] { return in_flight_ == 0; });
}

void TimingSender::Send(DoneFn done) {
  auto* call = new Call;
  call->done = std::move(done);
  SetTimeout(&call->context, timeout_ms_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    call->index = timings_.size();
    timings_.emplace_back();
    ++in_flight_;
  }
  stub_->async()->ModelInfer(&call->context, request_, &call->response,
                             [this, call](grpc::Status status) {
                               if (status.ok()) {
                                 const RequestTiming timing = TimingOfResponse(call->response);
                                 std::lock_guard<std::mutex> lock(mu_);
                                 timings_[call->index] = timing;
                               }
                               call->done(std::move(status));
                               delete call;
                               std::lock_guard<std::mutex> lock(mu_);
                               if (--in_flight_ == 0) idle_.notify_all();
                             });
}

std::vector<RequestTiming> TimingSender::Timings() const {
  std::lock_guard<std::mutex> lock(mu_);
  return timings_;
}

absl::StatusOr<std::vector<int64_t>> WarmWorkerPids(KilnService::Stub& stub,
                                                    const std::string& model) {
  WarmupReportRequest request;
  request.set_model(model);
  WarmupReportResponse response;
  grpc::ClientContext context;
  SetTimeout(&context, kReportTimeoutMs);
  const grpc::Status status = stub.WarmupReport(&context, request, &response);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat("WarmupReport: ", FormatGrpcStatus(status)));
  }
  std::vector<int64_t> pids;
  for (const ModelWarmupReport& report : response.models()) {
    if (report.model() != model) continue;
    for (const internal::WarmupReport& worker : report.workers()) pids.push_back(worker.pid());
  }
  return pids;
}

}  // namespace kiln::bench
