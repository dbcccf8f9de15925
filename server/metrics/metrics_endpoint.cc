#include "server/metrics/metrics_endpoint.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "httplib.h"

namespace kiln {
namespace {

// The content type of the text exposition format.
constexpr char kTextFormat[] = "text/plain; version=0.0.4; charset=utf-8";

// gRPC's "[::]" is httplib's "::".
std::string HttpHost(const std::string& host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    return host.substr(1, host.size() - 2);
  }
  return host;
}

// Loads the certificate chain, key and client CA of `tls` into `ctx`, as httplib's SSLServer
// does from paths (but TLS 1.2 or later, as gRPC's port): with a CA, the handshake requires a
// client certificate it signed. InvalidArgument naming the flags and OpenSSL's reason.
absl::Status LoadTls(const TlsFiles& tls, SSL_CTX* ctx) {
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  ERR_clear_error();
  bool loaded = SSL_CTX_use_certificate_chain_file(ctx, tls.cert.c_str()) == 1 &&
                SSL_CTX_use_PrivateKey_file(ctx, tls.key.c_str(), SSL_FILETYPE_PEM) == 1 &&
                SSL_CTX_check_private_key(ctx) == 1;
  if (loaded && !tls.ca.empty()) {
    loaded = SSL_CTX_load_verify_locations(ctx, tls.ca.c_str(), nullptr) == 1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  if (loaded) return absl::OkStatus();
  char reason[256] = "unknown";
  if (const unsigned long error = ERR_get_error(); error != 0) {
    ERR_error_string_n(error, reason, sizeof(reason));
  }
  ERR_clear_error();
  return absl::InvalidArgumentError(
      absl::StrCat("cannot serve metrics over TLS with --tls_cert=", tls.cert,
                   " --tls_key=", tls.key, tls.ca.empty() ? "" : absl::StrCat(" --tls_ca=", tls.ca),
                   ": ", reason, " (is the key the certificate's?)"));
}

}  // namespace

void LowerThisThreadsPriority() {
  // Linux applies a thread id's niceness to that thread alone; raising it needs no privilege.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), kMetricsThreadNice);
}

MetricsEndpoint::MetricsEndpoint(std::unique_ptr<httplib::Server> server, TlsFiles tls)
    : server_(std::move(server)), tls_(std::move(tls)) {}

MetricsEndpoint::~MetricsEndpoint() {
  server_->stop();  // also closes a socket that was bound but never listened on
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Bind(const std::string& host,
                                                                       int port,
                                                                       const TlsFiles& tls) {
  if (absl::Status valid = ValidateTlsFiles(tls); !valid.ok()) return valid;
  std::unique_ptr<httplib::Server> server;
  if (tls.enabled()) {
    // An SSL context without certificate or key yet: Start() loads them, after the zygote is
    // forked, so that the key is in the master's memory only (as for the gRPC port).
    auto https = std::make_unique<httplib::SSLServer>([](SSL_CTX&) { return true; });
    if (!https->is_valid()) return absl::InternalError("cannot make an OpenSSL context");
    server = std::move(https);
  } else {
    server = std::make_unique<httplib::Server>();
  }
  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint(std::move(server), tls));
  // Not httplib's default options, which set SO_REUSEPORT and so let a second server share the
  // port unnoticed. Close-on-exec keeps it from a reload's zygote (started by exec).
  int* fd = &endpoint->fd_;
  endpoint->server_->set_socket_options([fd](int sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    fcntl(sock, F_SETFD, FD_CLOEXEC);
    *fd = sock;
  });
  // Two threads: a scrape is a few milliseconds, and one slow client must not hold up the next.
  endpoint->server_->new_task_queue = [] { return new httplib::ThreadPool(2); };
  const std::string address = HttpHost(host);
  if (port == 0) {
    endpoint->port_ = endpoint->server_->bind_to_any_port(address);
  } else if (endpoint->server_->bind_to_port(address, port)) {
    endpoint->port_ = port;
  }
  if (endpoint->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", host, ":", port,
        " for metrics (in use by another process, or not a local address); choose another "
        "--metrics_port, or 0 for no metrics endpoint"));
  }
  return endpoint;
}

absl::Status MetricsEndpoint::Start(std::function<std::string()> render) {
  if (tls_.enabled()) {
    RETURN_IF_ERROR(LoadTls(tls_, static_cast<httplib::SSLServer&>(*server_).ssl_context()));
  }
  server_->Get("/metrics",
               [render = std::move(render)](const httplib::Request&, httplib::Response& response) {
                 static thread_local const bool lowered = (LowerThisThreadsPriority(), true);
                 (void)lowered;
                 response.set_content(render(), kTextFormat);
               });
  server_->Get("/", [](const httplib::Request&, httplib::Response& response) {
    response.set_content("kiln-server: Prometheus metrics at /metrics\n", "text/plain");
  });
  thread_ = std::thread([server = server_.get()] { server->listen_after_bind(); });
  return absl::OkStatus();
}

}  // namespace kiln
