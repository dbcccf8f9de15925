// The Open Inference Protocol service of kiln-floor-server: what kiln-server's front does for a
// request (route it to a model version, validate and decode it against the version's config with
// kiln's codec, encode the response with kiln's codec), with zeros where a worker would have run
// the model. The floor a front end on this gRPC stack allows: kiln-server at the same load can
// only be slower.
//
// On gRPC's callback API, as kiln-server's front (server/front/inference_service.h), with gRPC's
// own callback threads; unlike kiln, every call is answered on the thread that received it (there
// is no worker to wait for).
#ifndef KILN_BENCH_FLOOR_SERVICE_H_
#define KILN_BENCH_FLOOR_SERVICE_H_

#include "absl/status/status.h"
#include "bench/floor_models.h"
#include "proto/grpc_service.grpc.pb.h"

namespace kiln::bench {

// Ownership: borrows the models, which must outlive it (and the grpc::Server it is registered
// with). Thread-safety: gRPC calls its methods from any of its threads at once; it holds no
// mutable state.
class FloorService final : public inference::GRPCInferenceService::CallbackService {
 public:
  explicit FloorService(const FloorModels& models) : models_(models) {}

  // Live and ready from the start: there is nothing to warm.
  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* context,
                                       const inference::ServerLiveRequest* request,
                                       inference::ServerLiveResponse* response) override;
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* context,
                                        const inference::ServerReadyRequest* request,
                                        inference::ServerReadyResponse* response) override;
  // NOT_FOUND for a model (or version) not served, as kiln-server answers.
  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* context,
                                       const inference::ModelReadyRequest* request,
                                       inference::ModelReadyResponse* response) override;
  // Name "kiln-floor-server", no extensions.
  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* context,
                                           const inference::ServerMetadataRequest* request,
                                           inference::ServerMetadataResponse* response) override;
  // What kiln-server answers for the same repository (kiln's FillModelMetadata).
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* context,
                                          const inference::ModelMetadataRequest* request,
                                          inference::ModelMetadataResponse* response) override;
  // Routes, decodes (DecodeInferRequest) and answers every requested output as zeros of the
  // request's batch (EncodeInferResponse); a bad request gets kiln-server's error.
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* context,
                                       const inference::ModelInferRequest* request,
                                       inference::ModelInferResponse* response) override;

 private:
  absl::Status Infer(const inference::ModelInferRequest& request,
                     inference::ModelInferResponse* response) const;

  const FloorModels& models_;
};

}  // namespace kiln::bench

#endif  // KILN_BENCH_FLOOR_SERVICE_H_
