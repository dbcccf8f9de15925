#include "bench/floor_service.h"

#include <string>
#include <vector>

#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "server/codec/infer_codec.h"

namespace kiln::bench {
namespace {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* FloorService::ServerLive(grpc::CallbackServerContext* context,
                                                   const inference::ServerLiveRequest*,
                                                   inference::ServerLiveResponse* response) {
  response->set_live(true);
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* FloorService::ServerReady(grpc::CallbackServerContext* context,
                                                    const inference::ServerReadyRequest*,
                                                    inference::ServerReadyResponse* response) {
  response->set_ready(true);
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* FloorService::ModelReady(grpc::CallbackServerContext* context,
                                                   const inference::ModelReadyRequest* request,
                                                   inference::ModelReadyResponse* response) {
  absl::StatusOr<const FloorVersion*> version = models_.Route(request->name(), request->version());
  if (!version.ok()) return Finish(context, version.status());
  response->set_ready(true);
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* FloorService::ServerMetadata(
    grpc::CallbackServerContext* context, const inference::ServerMetadataRequest*,
    inference::ServerMetadataResponse* response) {
  response->set_name("kiln-floor-server");
  response->set_version(KILN_VERSION);
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* FloorService::ModelMetadata(
    grpc::CallbackServerContext* context, const inference::ModelMetadataRequest* request,
    inference::ModelMetadataResponse* response) {
  absl::StatusOr<const FloorVersion*> version = models_.Route(request->name(), request->version());
  if (!version.ok()) return Finish(context, version.status());
  FillModelMetadata((*version)->spec.config, models_.Versions(request->name()), response);
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* FloorService::ModelInfer(grpc::CallbackServerContext* context,
                                                   const inference::ModelInferRequest* request,
                                                   inference::ModelInferResponse* response) {
  return Finish(context, Infer(*request, response));
}

absl::Status FloorService::Infer(const inference::ModelInferRequest& request,
                                 inference::ModelInferResponse* response) const {
  ASSIGN_OR_RETURN(const FloorVersion* version,
                   models_.Route(request.model_name(), request.model_version()));
  const ::kiln::ModelConfig& config = version->spec.config;  // not the ModelConfig RPC
  ASSIGN_OR_RETURN(const DecodedRequest decoded, DecodeInferRequest(request, config));
  const std::vector<TensorView> outputs = ZeroOutputs(*version, decoded.batch_size);
  return EncodeInferResponse(config, std::to_string(version->spec.version), request, decoded,
                             outputs, response);
}

}  // namespace kiln::bench
