// Conversions between absl::Status and grpc::Status, for the RPC edge (docs/ARCHITECTURE.md,
// "A request's path"): statuses are absl::Status everywhere and become grpc::Status only where
// an RPC answers or is answered.
//
// Header-only and inline on purpose: it includes <grpcpp/support/status.h>, so only targets that
// link gRPC (gRPC::grpc++: the server, kiln-bench, their tests) may include it; kiln_common
// itself does not link gRPC, and nothing else in common/ includes this file.
//
// absl::StatusCode mirrors the gRPC codes value for value (OK = 0 ... UNAUTHENTICATED = 16), so
// a code crosses unchanged; one outside that range (which neither side should produce) becomes
// UNKNOWN. The message crosses unchanged; absl payloads and gRPC's error_details do not cross.
//
// Thread-safety: pure functions.
#ifndef KILN_COMMON_GRPC_STATUS_H_
#define KILN_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"

namespace kiln {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  const bool known = code > 0 && code <= static_cast<int>(grpc::StatusCode::UNAUTHENTICATED);
  return grpc::Status(known ? static_cast<grpc::StatusCode>(code) : grpc::StatusCode::UNKNOWN,
                      std::string(status.message()));
}

inline absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const int code = static_cast<int>(status.error_code());
  const bool known = code > 0 && code <= static_cast<int>(absl::StatusCode::kUnauthenticated);
  return absl::Status(known ? static_cast<absl::StatusCode>(code) : absl::StatusCode::kUnknown,
                      status.error_message());
}

}  // namespace kiln

#endif  // KILN_COMMON_GRPC_STATUS_H_
