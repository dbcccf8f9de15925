// The Open Inference Protocol (KServe v2) gRPC service, with Triton's extensions (the model
// repository, model_configuration, streaming), on gRPC's callback API: requests are validated
// against their model's config here, queued on the WorkerPool, and answered from the pool's
// thread when a worker returns the outputs (no gRPC thread waits on a worker).
#ifndef KILN_SERVER_FRONT_INFERENCE_SERVICE_H_
#define KILN_SERVER_FRONT_INFERENCE_SERVICE_H_

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "common/model_config_loader.h"
#include "proto/grpc_service.grpc.pb.h"
#include "server/front/infer_stream.h"
#include "server/front/repository_control.h"
#include "server/front/response_order.h"
#include "server/front/text_tokens.h"
#include "server/front/traffic_recording.h"
#include "server/metrics/metrics.h"
#include "server/supervisor/master_state.h"
#include "server/supervisor/worker_pool.h"

namespace kiln {

struct InferenceServiceOptions {
  TrafficRecording* recording = nullptr;  // told of every request that finishes (--state_dir)
  // The repository extension (RepositoryIndex, RepositoryModelLoad/Unload); null: UNIMPLEMENTED.
  RepositoryControl* repository = nullptr;
  // --model_control_mode=explicit: RepositoryModelLoad/Unload reload; otherwise (the default)
  // they are refused and the served models change only with the repository and SIGHUP.
  bool model_control = false;
  bool staged = false;  // route to the versions a reload staged (its readiness check)
  // Counts every inference request once (server/metrics/metrics.h); null: not counted (the
  // readiness check's service).
  ServerMetrics* metrics = nullptr;
  // false: requests are neither counted (metrics, above) nor recorded until StartCounting(); the
  // master's port counts from SERVING on, not the requests that prime it before (PrimeServingPath).
  bool counted_from_start = true;
  // Counts a text request's tokens for the dynamic batcher; null: text requests go one per call.
  // The readiness check's service and the port's share one, so that a version's tokenizer is
  // loaded by the check's requests, before the port opens.
  TextTokens* text_tokens = nullptr;
  // Every request is its own call, even under dynamic batching (InferJob::alone): the readiness
  // check's service, whose requests must each take their shape through the whole path and, sent
  // together, reach every worker. (Batched, mlp's 4 check requests on 4 workers ran as 2 calls
  // padded to batch 8: 2 workers and 3 shapes never checked.)
  bool unbatched = false;
};

// Ownership: borrows the pool, the master's state, the recording, the repository control and the
// metrics, which must outlive it (and the grpc::Server it is registered with); owns the registry of
// open streams. Thread-safety: gRPC calls its methods from any of its threads; StopStreams may be
// called from any thread.
class InferenceService final : public inference::GRPCInferenceService::CallbackService {
 public:
  // ServerReady and ModelReady answer true only while `master` is Serving (and the model has
  // its quorum).
  InferenceService(WorkerPool& pool, const MasterStateMachine& master,
                   InferenceServiceOptions options = {});

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* context,
                                       const inference::ServerLiveRequest* request,
                                       inference::ServerLiveResponse* response) override;
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* context,
                                        const inference::ServerReadyRequest* request,
                                        inference::ServerReadyResponse* response) override;
  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* context,
                                       const inference::ModelReadyRequest* request,
                                       inference::ModelReadyResponse* response) override;
  // Lists the extensions kiln serves: model_configuration, and model_repository with
  // --model_control_mode=explicit.
  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* context,
                                           const inference::ServerMetadataRequest* request,
                                           inference::ServerMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* context,
                                          const inference::ModelMetadataRequest* request,
                                          inference::ModelMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* context,
                                       const inference::ModelInferRequest* request,
                                       inference::ModelInferResponse* response) override;
  // server/front/infer_stream.h: responses in order, an error per request, ends at drain.
  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
  ModelStreamInfer(grpc::CallbackServerContext* context) override;
  // The version's config as Triton's ModelConfig (server/codec/triton_model_config.h).
  grpc::ServerUnaryReactor* ModelConfig(grpc::CallbackServerContext* context,
                                        const inference::ModelConfigRequest* request,
                                        inference::ModelConfigResponse* response) override;
  grpc::ServerUnaryReactor* RepositoryIndex(grpc::CallbackServerContext* context,
                                            const inference::RepositoryIndexRequest* request,
                                            inference::RepositoryIndexResponse* response) override;
  // Answered once the reload is done (or failed: the served versions keep serving).
  grpc::ServerUnaryReactor* RepositoryModelLoad(
      grpc::CallbackServerContext* context, const inference::RepositoryModelLoadRequest* request,
      inference::RepositoryModelLoadResponse* response) override;
  grpc::ServerUnaryReactor* RepositoryModelUnload(
      grpc::CallbackServerContext* context, const inference::RepositoryModelUnloadRequest* request,
      inference::RepositoryModelUnloadResponse* response) override;

  // Requests that arrive from now on are counted and recorded (InferenceServiceOptions::
  // counted_from_start). Any thread.
  void StartCounting() { counting_.store(true, std::memory_order_release); }

  // Drain: open streams stop reading and end once what they read is answered (InferStreams).
  void StopStreams() { streams_.StopAll(); }

 private:
  // Routes, validates and queues `request`, then calls `finish` exactly once, after `response`
  // is filled or with the error (from this thread when it fails before being queued, else from
  // the pool's; with preserve_ordering, perhaps later, from the thread that answers the version's
  // earlier request). `request` and `response` must live until then. `cancelled` says whether the
  // client gave up (the pool asks it while the request waits: InferJob::cancelled).
  void StartInfer(const inference::ModelInferRequest& request,
                  inference::ModelInferResponse* response, int64_t deadline_monotonic_ns,
                  std::function<bool()> cancelled, std::function<void(absl::Status)> finish);

  grpc::ServerUnaryReactor* Reload(grpc::CallbackServerContext* context, ReloadRequest reload);

  bool Serving() const { return master_.state() == MasterState::kServing; }

  WorkerPool& pool_;
  const MasterStateMachine& master_;
  const InferenceServiceOptions options_;
  std::atomic<bool> counting_;  // whether requests are counted and recorded
  InferStreams streams_;
  ResponseOrder order_;  // the versions with preserve_ordering
};

}  // namespace kiln

#endif  // KILN_SERVER_FRONT_INFERENCE_SERVICE_H_
