// The gRPC port's TLS credentials, from the files common/tls_files.h reads (--tls_cert, --tls_key,
// --tls_ca).
#ifndef KILN_SERVER_FRONT_TLS_CREDENTIALS_H_
#define KILN_SERVER_FRONT_TLS_CREDENTIALS_H_

#include <memory>

#include "common/tls_files.h"

namespace grpc {
class ServerCredentials;
}

namespace kiln {

// The gRPC port's credentials: insecure without a certificate; otherwise SSL with the
// certificate and key, requiring and verifying client certificates when there is a CA.
std::shared_ptr<grpc::ServerCredentials> GrpcServerCredentials(const TlsPem& pem);

}  // namespace kiln

#endif  // KILN_SERVER_FRONT_TLS_CREDENTIALS_H_
