#include "server/front/tls_credentials.h"

#include <grpcpp/security/server_credentials.h>

namespace kiln {

std::shared_ptr<grpc::ServerCredentials> GrpcServerCredentials(const TlsPem& pem) {
  if (pem.cert.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_key_cert_pairs.push_back({pem.key, pem.cert});
  if (!pem.ca.empty()) {
    options.pem_root_certs = pem.ca;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

}  // namespace kiln
