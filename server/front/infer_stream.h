// ModelStreamInfer (Triton's streaming extension): inference requests over one bidirectional
// gRPC stream. Each request read is started at once (up to kMaxInFlightPerStream of a stream's
// requests run or wait at a time: reading pauses beyond that), and the responses are written in
// the order the requests arrived. A request that fails gets its own response with
// error_message set; the stream goes on.
//
// A stream ends when the client half-closes it (OK, after the last response), when the client
// cancels it (CANCELLED; requests already started still finish, their responses are dropped),
// or when the server drains (InferStreams::StopAll: reading stops, the responses to every
// request already read are written, then UNAVAILABLE).
#ifndef KILN_SERVER_FRONT_INFER_STREAM_H_
#define KILN_SERVER_FRONT_INFER_STREAM_H_

#include <functional>
#include <map>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "proto/grpc_service.pb.h"

namespace kiln {

// Requests of one stream that may be started and not yet answered at a time.
inline constexpr int kMaxInFlightPerStream = 32;

// Starts one request: route, validate and queue it, fill `response`, then call `finish` exactly
// once with its status (from any thread, possibly before returning). `request` and `response`
// live until `finish` is called.
using InferStarter = std::function<void(const inference::ModelInferRequest& request,
                                        inference::ModelInferResponse* response,
                                        std::function<void(absl::Status)> finish)>;

// The open streams of one service, so that a drain can end them.
// Ownership: owns nothing a stream needs; each stream is owned by gRPC until it is done and
// removes itself then. Must outlive every stream it opened (the grpc::Server).
// Thread-safety: every method may be called from any thread.
class InferStreams {
 public:
  struct Stream;  // one stream's state (infer_stream.cc)

  // A new stream's reactor for gRPC. Opened after StopAll, it stops at once.
  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>* Open(
      InferStarter start);

  // Drain: every open stream (and every one opened later) stops reading and ends once the
  // requests it has read are answered.
  void StopAll();

 private:
  friend struct Stream;
  void Closed(const Stream* stream);

  absl::Mutex mu_;
  std::map<const Stream*, std::shared_ptr<Stream>> streams_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace kiln

#endif  // KILN_SERVER_FRONT_INFER_STREAM_H_
