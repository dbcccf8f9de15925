// The Open Inference Protocol (KServe v2) gRPC service, on gRPC's callback API: requests are
// validated against their model's config here, queued on the WorkerPool, and answered from
// the pool's thread when a worker returns the outputs (no gRPC thread waits on a worker).
#ifndef KILN_SERVER_INFERENCE_SERVICE_H_
#define KILN_SERVER_INFERENCE_SERVICE_H_

#include <map>
#include <string>
#include <vector>

#include "common/model_config_loader.h"
#include "proto/grpc_service.grpc.pb.h"
#include "server/master_state.h"
#include "server/metrics.h"
#include "server/reloader.h"
#include "server/traffic_recording.h"
#include "server/worker_pool.h"

namespace kiln {

struct InferenceServiceOptions {
  TrafficRecording* recording = nullptr;  // told of every request that finishes (--state_dir)
  // The repository extension (RepositoryIndex, RepositoryModelLoad/Unload); null: UNIMPLEMENTED.
  Reloader* reloader = nullptr;
  bool repository_read_only = false;  // --repository_read_only: no load/unload RPCs
  bool staged = false;                // route to the versions a reload staged (its readiness check)
  // Counts every inference request once (server/metrics.h); null: not counted (the readiness
  // check's service).
  ServerMetrics* metrics = nullptr;
};

// Ownership: borrows the pool, the master's state, the recording, the reloader and the metrics,
// which must outlive it (and the grpc::Server it is registered with). Thread-safety: gRPC calls
// its methods from any of its threads; it keeps no mutable state of its own.
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
  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* context,
                                           const inference::ServerMetadataRequest* request,
                                           inference::ServerMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* context,
                                          const inference::ModelMetadataRequest* request,
                                          inference::ModelMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* context,
                                       const inference::ModelInferRequest* request,
                                       inference::ModelInferResponse* response) override;
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

 private:
  grpc::ServerUnaryReactor* Reload(grpc::CallbackServerContext* context, ReloadRequest reload);

  bool Serving() const { return master_.state() == MasterState::kServing; }

  WorkerPool& pool_;
  const MasterStateMachine& master_;
  const InferenceServiceOptions options_;
};

}  // namespace kiln

#endif  // KILN_SERVER_INFERENCE_SERVICE_H_
