// TLS files for kiln-server's ports (--tls_cert, --tls_key, --tls_ca): the gRPC port through gRPC's
// own SSL credentials (server/front/tls_credentials.h), the metrics port through cpp-httplib's
// SSLServer (server/metrics/metrics_endpoint.h), from the same files.
//
// Without files both ports are plaintext (the default, with --host on loopback). With a
// certificate and key, both serve TLS (1.2 or later, as gRPC and OpenSSL negotiate). With a CA
// too, both require a client certificate signed by that CA (mutual TLS) and refuse a connection
// without one in the handshake.
#ifndef KILN_COMMON_TLS_FILES_H_
#define KILN_COMMON_TLS_FILES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln {

// PEM file paths; a value without synchronisation.
struct TlsFiles {
  std::string cert;  // the server's certificate chain
  std::string key;   // its private key
  std::string ca;    // CA certificates that sign client certificates; empty: none required

  bool enabled() const { return !cert.empty(); }
};

// InvalidArgument, naming the flags, unless the combination makes sense: none, cert and key,
// or all three.
absl::Status ValidateTlsFiles(const TlsFiles& files);

// The files' contents: read when the server starts, to check them (a bad path fails the start
// at once, before the models load), and again when the port opens, for gRPC's credentials (gRPC
// objects exist only after the zygote is forked, and the key stays out of its memory). A value;
// empty strings when TLS is off.
struct TlsPem {
  std::string cert, key, ca;
};

// Validates the combination and reads each file: InvalidArgument naming the flag and the path
// when one cannot be read or holds no PEM block.
absl::StatusOr<TlsPem> ReadTlsFiles(const TlsFiles& files);

}  // namespace kiln

#endif  // KILN_COMMON_TLS_FILES_H_
