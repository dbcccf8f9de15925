#include "server/front/inference_service.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/grpc_status.h"
#include "server/codec/infer_codec.h"
#include "server/codec/triton_model_config.h"

namespace kiln {
namespace {

// Triton's names for the extensions kiln serves beside the core protocol (ServerMetadata). Triton
// names no extension for ModelStreamInfer: its gRPC service always has it.
constexpr const char* kServerExtensions[] = {"classification", "model_configuration",
                                             "schedule_policy"};
constexpr char kModelRepositoryExtension[] = "model_repository";

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

double MicrosecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
      .count();
}

// A successful request's numbers: the outcome's (milliseconds) with the service's own.
RequestRecord RequestRecordOf(const InferOutcome& outcome, int64_t rows, double decode_us,
                              double encode_us, double total_us) {
  RequestRecord record;
  record.rows = rows;
  // The call's numbers, counted once per call: with its first job.
  record.executions = outcome.first_in_call ? outcome.executions : 0;
  record.call_rows = outcome.first_in_call ? outcome.call_rows : 0;
  record.total_us = total_us;
  record.queue_us = outcome.queue_ms * 1e3;
  record.input_us = decode_us + (outcome.input_ms + std::max(outcome.tokenize_ms, 0.0)) * 1e3;
  record.infer_us = outcome.compute_ms * 1e3;
  record.output_us = outcome.output_ms * 1e3 + encode_us;
  record.tokenize_us = outcome.tokenize_ms < 0 ? -1 : outcome.tokenize_ms * 1e3;
  record.cold_shape = outcome.cold_shape;
  record.padded_rows = outcome.first_in_call ? outcome.padded_rows : 0;
  record.padded_length = outcome.padded_length;
  return record;
}

}  // namespace

InferenceService::InferenceService(WorkerPool& pool, const MasterStateMachine& master,
                                   InferenceServiceOptions options)
    : pool_(pool), master_(master), options_(options), counting_(options.counted_from_start) {}

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
  absl::StatusOr<SharedSpec> spec = pool_.Route(request->name(), request->version());
  if (!spec.ok()) return Finish(context, spec.status());
  response->set_ready(Serving() && pool_.ModelReady(request->name(), (*spec)->version));
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ServerMetadata(
    grpc::CallbackServerContext* context, const inference::ServerMetadataRequest*,
    inference::ServerMetadataResponse* response) {
  response->set_name("kiln");
  response->set_version(KILN_VERSION);
  for (const char* extension : kServerExtensions) response->add_extensions(extension);
  if (options_.repository != nullptr && options_.model_control) {
    response->add_extensions(kModelRepositoryExtension);
  }
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelMetadata(
    grpc::CallbackServerContext* context, const inference::ModelMetadataRequest* request,
    inference::ModelMetadataResponse* response) {
  // The inputs and outputs of the version asked for (or the one an unversioned request would go
  // to), and every served version.
  absl::StatusOr<SharedSpec> spec = pool_.Route(request->name(), request->version());
  if (!spec.ok()) return Finish(context, spec.status());
  std::vector<std::string> versions;
  for (const SharedSpec& served : pool_.Served()) {
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
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  StartInfer(
      *request, response, MonotonicDeadlineNs(*context),
      [context] { return context->IsCancelled(); },
      [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); });
  return reactor;
}

grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
InferenceService::ModelStreamInfer(grpc::CallbackServerContext* context) {
  // The stream's deadline, if any, bounds each of its requests.
  return streams_.Open([this, context](const inference::ModelInferRequest& request,
                                       inference::ModelInferResponse* response,
                                       std::function<void(absl::Status)> finish) {
    StartInfer(
        request, response, MonotonicDeadlineNs(*context),
        [context] { return context->IsCancelled(); }, std::move(finish));
  });
}

void InferenceService::StartInfer(const inference::ModelInferRequest& request,
                                  inference::ModelInferResponse* response,
                                  int64_t deadline_monotonic_ns, std::function<bool()> cancelled,
                                  std::function<void(absl::Status)> finish) {
  // A reload may switch the version between routing and queueing: the pool then refuses the job
  // (Aborted), and it is routed and decoded again, for the version that now serves. A request is
  // always decoded against the config of the version that runs it. It is counted once, in the
  // metrics of the version it was last routed to (a request for an unknown model is not).
  const auto arrived = std::chrono::steady_clock::now();
  const bool counted = counting_.load(std::memory_order_acquire);
  absl::Status queued;
  VersionMetrics* metrics = nullptr;
  for (int attempt = 0; attempt < 3; ++attempt) {
    absl::StatusOr<SharedSpec> found =
        pool_.Route(request.model_name(), request.model_version(), options_.staged);
    if (!found.ok()) return finish(found.status());
    const SharedSpec spec = *std::move(found);
    if (options_.metrics != nullptr && counted) {
      metrics = &options_.metrics->Version(spec->config.name(), spec->version);
    }
    absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, spec->config);
    if (!decoded.ok()) {
      if (metrics != nullptr) metrics->Failed(FailureReason::kOther);
      return finish(decoded.status());
    }
    const double decode_us = MicrosecondsSince(arrived);

    // The decoded request (and the request message its views may point into) lives until
    // `finish` is called, in `done`.
    auto held = std::make_shared<DecodedRequest>(*std::move(decoded));
    InferJob job;
    job.spec = spec;
    job.alone = options_.unbatched;
    if (held->text) {
      job.text = &held->inputs.front().strings;
      if (options_.text_tokens != nullptr) {
        job.text_tokens = options_.text_tokens->LongestRow(*spec, *job.text);
      }
    } else {
      for (const DecodedInput& input : held->inputs) job.inputs.push_back(input.view);
    }
    // preserve_ordering: the response leaves after those of the version's earlier requests.
    const bool ordered = spec->config.dynamic_batching().enabled() &&
                         spec->config.dynamic_batching().preserve_ordering();
    const uint64_t place = ordered ? order_.Take(spec->key()) : 0;
    job.deadline_monotonic_ns = deadline_monotonic_ns;
    job.priority = held->priority;
    job.timeout_us = held->timeout_us;
    job.cancelled = cancelled;
    job.done = [this, finish, &request, response, held, spec, metrics, arrived, decode_us, ordered,
                place, recording = counted ? options_.recording : nullptr](InferOutcome outcome) {
      if (recording != nullptr) recording->Completed(*spec, *held, outcome);
      absl::Status status = outcome.outputs.status();
      FailureStage stage = outcome.never_sent ? FailureStage::kQueue : FailureStage::kOutcome;
      const auto encoding = std::chrono::steady_clock::now();
      if (status.ok()) {
        stage = FailureStage::kResponse;
        status = EncodeInferResponse(spec->config, std::to_string(spec->version), request, *held,
                                     *outcome.outputs, response);
      }
      if (status.ok() && WantsTiming(request)) {
        SetTiming({outcome.compute_ms, outcome.compute_cpu_ms, outcome.cold_shape,
                   outcome.worker_pid, outcome.ran_as},
                  response);
      }
      if (metrics != nullptr && status.ok()) {
        metrics->Succeeded(RequestRecordOf(outcome, std::max<int64_t>(held->batch_size, 1),
                                           decode_us, MicrosecondsSince(encoding),
                                           MicrosecondsSince(arrived)));
      } else if (metrics != nullptr) {
        metrics->Failed(ClassifyFailure(stage, status));
      }
      if (ordered) {
        order_.Answered(spec->key(), place, [finish, status] { finish(status); });
      } else {
        finish(status);
      }
    };
    queued = pool_.Submit(std::move(job));
    if (queued.ok()) return;
    if (ordered) order_.Answered(spec->key(), place, nullptr);  // never queued: lets later go
    if (!absl::IsAborted(queued) && !absl::IsNotFound(queued)) break;
  }
  if (absl::IsAborted(queued)) queued = absl::UnavailableError(queued.message());
  if (metrics != nullptr) metrics->Failed(ClassifyFailure(FailureStage::kAdmission, queued));
  finish(queued);
}

grpc::ServerUnaryReactor* InferenceService::ModelConfig(
    grpc::CallbackServerContext* context, const inference::ModelConfigRequest* request,
    inference::ModelConfigResponse* response) {
  absl::StatusOr<SharedSpec> spec = pool_.Route(request->name(), request->version());
  if (!spec.ok()) return Finish(context, spec.status());
  // The instance count is the version's workers now (scaling changes it), not the config's.
  int instances = 0;
  for (const WorkerInfo& worker : pool_.Workers()) {
    instances += worker.spec == *spec && worker.state != WorkerState::kExited;
  }
  *response->mutable_config() = ToTritonModelConfig(**spec, instances);
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::RepositoryIndex(
    grpc::CallbackServerContext* context, const inference::RepositoryIndexRequest* request,
    inference::RepositoryIndexResponse* response) {
  if (options_.repository == nullptr) {
    return Finish(context, absl::UnimplementedError("this service has no model repository"));
  }
  for (auto& entry : options_.repository->Index(request->ready())) {
    *response->add_models() = std::move(entry);
  }
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::Reload(grpc::CallbackServerContext* context,
                                                   ReloadRequest reload) {
  if (options_.repository == nullptr) {
    return Finish(context, absl::UnimplementedError("this service has no model repository"));
  }
  if (!options_.model_control) {
    return Finish(context, absl::FailedPreconditionError(
                               "model control is off (start kiln-server with "
                               "--model_control_mode=explicit to allow load and unload): models "
                               "change only with the repository and SIGHUP"));
  }
  if (reload.model.empty()) {
    return Finish(context, absl::InvalidArgumentError("model_name is empty"));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  options_.repository->Request(
      std::move(reload), [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); });
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::RepositoryModelLoad(
    grpc::CallbackServerContext* context, const inference::RepositoryModelLoadRequest* request,
    inference::RepositoryModelLoadResponse*) {
  return Reload(context, {ReloadRequest::Kind::kLoad, request->model_name()});
}

grpc::ServerUnaryReactor* InferenceService::RepositoryModelUnload(
    grpc::CallbackServerContext* context, const inference::RepositoryModelUnloadRequest* request,
    inference::RepositoryModelUnloadResponse*) {
  return Reload(context, {ReloadRequest::Kind::kUnload, request->model_name()});
}

}  // namespace kiln
