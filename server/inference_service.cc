#include "server/inference_service.h"

#include <chrono>
#include <ctime>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/grpc_status.h"
#include "server/infer_codec.h"

namespace kiln {
namespace {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// The client's deadline on CLOCK_MONOTONIC (what workers compare against); 0 when none.
int64_t MonotonicDeadlineNs(const grpc::CallbackServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline >= std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365)) {
    return 0;
  }
  const auto remaining = deadline - std::chrono::system_clock::now();
  return MonotonicNowNs() + std::chrono::duration_cast<std::chrono::nanoseconds>(remaining).count();
}

}  // namespace

InferenceService::InferenceService(WorkerPool& pool, const MasterStateMachine& master,
                                   TrafficRecording* recording)
    : pool_(pool), master_(master), recording_(recording) {}

grpc::ServerUnaryReactor* InferenceService::ServerLive(grpc::CallbackServerContext* context,
                                                       const inference::ServerLiveRequest*,
                                                       inference::ServerLiveResponse* response) {
  response->set_live(true);
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ServerReady(grpc::CallbackServerContext* context,
                                                        const inference::ServerReadyRequest*,
                                                        inference::ServerReadyResponse* response) {
  response->set_ready(Serving() && pool_.AllModelsReady());
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelReady(grpc::CallbackServerContext* context,
                                                       const inference::ModelReadyRequest* request,
                                                       inference::ModelReadyResponse* response) {
  // Without a version: the version an unversioned request would go to.
  absl::StatusOr<const ModelSpec*> spec = pool_.Route(request->name(), request->version());
  if (!spec.ok()) return Finish(context, spec.status());
  response->set_ready(Serving() && pool_.ModelReady(request->name(), (*spec)->version));
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ServerMetadata(
    grpc::CallbackServerContext* context, const inference::ServerMetadataRequest*,
    inference::ServerMetadataResponse* response) {
  response->set_name("kiln");
  response->set_version(KILN_VERSION);
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelMetadata(
    grpc::CallbackServerContext* context, const inference::ModelMetadataRequest* request,
    inference::ModelMetadataResponse* response) {
  // The inputs and outputs of the version asked for (or the one an unversioned request would go
  // to), and every served version.
  absl::StatusOr<const ModelSpec*> spec = pool_.Route(request->name(), request->version());
  if (!spec.ok()) return Finish(context, spec.status());
  std::vector<std::string> versions;
  for (const ModelSpec* served : pool_.Served()) {
    if (served->config.name() == request->name()) {
      versions.push_back(std::to_string(served->version));
    }
  }
  FillModelMetadata((*spec)->config, versions, response);
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelInfer(grpc::CallbackServerContext* context,
                                                       const inference::ModelInferRequest* request,
                                                       inference::ModelInferResponse* response) {
  absl::StatusOr<const ModelSpec*> found =
      pool_.Route(request->model_name(), request->model_version());
  if (!found.ok()) return Finish(context, found.status());
  const ModelSpec& spec = **found;
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(*request, spec.config);
  if (!decoded.ok()) return Finish(context, decoded.status());

  // The decoded request (and the request message its views may point into) lives until the
  // reactor finishes, which happens in `done`.
  auto held = std::make_shared<DecodedRequest>(*std::move(decoded));
  InferJob job;
  job.model = spec.key();
  if (held->text) {
    job.text = &held->inputs.front().strings;
  } else {
    for (const DecodedInput& input : held->inputs) job.inputs.push_back(input.view);
  }
  job.deadline_monotonic_ns = MonotonicDeadlineNs(*context);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  job.done = [reactor, request, response, held, &spec,
              recording = recording_](InferOutcome outcome) {
    if (recording != nullptr) recording->Completed(spec, *held, outcome);
    absl::Status status = outcome.outputs.status();
    if (status.ok()) {
      status = EncodeInferResponse(spec.config, std::to_string(spec.version), *request, *held,
                                   *outcome.outputs, response);
    }
    if (status.ok() && WantsTiming(*request)) {
      SetTiming(
          {outcome.compute_ms, outcome.compute_cpu_ms, outcome.cold_shape, outcome.worker_pid},
          response);
    }
    reactor->Finish(ToGrpcStatus(status));
  };
  if (absl::Status queued = pool_.Submit(std::move(job)); !queued.ok()) {
    reactor->Finish(ToGrpcStatus(queued));
  }
  return reactor;
}

}  // namespace kiln
