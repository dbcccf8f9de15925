// The Open Inference Protocol (KServe v2) gRPC service, on gRPC's callback API: requests are
// validated against their model's config here, queued on the WorkerPool, and answered from
// the pool's thread when a worker returns the outputs (no gRPC thread waits on a worker).
#ifndef KILN_SERVER_INFERENCE_SERVICE_H_
#define KILN_SERVER_INFERENCE_SERVICE_H_

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "common/model_config_loader.h"
#include "common/traffic_profile.h"
#include "proto/grpc_service.grpc.pb.h"
#include "server/worker_pool.h"

namespace kiln {

// Ownership: borrows the specs and the pool, which must outlive it (and the grpc::Server it is
// registered with). Thread-safety: gRPC calls its methods from any of its threads; it keeps no
// mutable state besides the atomic draining flag.
class InferenceService final : public inference::GRPCInferenceService::CallbackService {
 public:
  // `samples` (optional) keeps a bounded sample of the requests served (--record_samples).
  InferenceService(const std::vector<ModelSpec>& specs, WorkerPool& pool,
                   TrafficRecorder* samples = nullptr);

  // After this, ServerReady and ModelReady answer false (the server is draining).
  void SetDraining() { draining_.store(true); }

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

 private:
  // The spec of `name` at `version` ("" = the served one), or NotFound.
  absl::StatusOr<const ModelSpec*> FindModel(const std::string& name,
                                             const std::string& version) const;

  std::map<std::string, const ModelSpec*> models_;
  WorkerPool& pool_;
  TrafficRecorder* const samples_;
  std::atomic<bool> draining_{false};
};

}  // namespace kiln

#endif  // KILN_SERVER_INFERENCE_SERVICE_H_
