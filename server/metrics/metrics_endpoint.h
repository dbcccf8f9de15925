// The HTTP endpoint Prometheus scrapes: GET /metrics answers the text exposition format 0.0.4
// (cpp-httplib, on a port of its own, --metrics_port); HTTPS with --tls_cert/--tls_key, and only
// for clients with a certificate from --tls_ca when it is set (common/tls_files.h).
//
// Its port is bound when the process starts, before the models load, so that a port in use fails
// the start at once and a scrape is never refused; it answers from Start(), which the master
// calls right after forking the zygote (the master must have exactly one thread until then,
// docs/ARCHITECTURE.md "Processes"): a scrape made while the models load waits in the listen
// backlog, and warmup progress is visible long before the gRPC port opens.
#ifndef KILN_SERVER_METRICS_METRICS_ENDPOINT_H_
#define KILN_SERVER_METRICS_METRICS_ENDPOINT_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tls_files.h"

namespace httplib {
class Server;
}

namespace kiln {

// The niceness of the threads that answer scrapes and sample memory: on a busy node they yield
// to the threads that serve requests (a scrape costs about a millisecond of CPU), yet still get
// about a tenth of a CPU's time under full contention, so a scrape is late, never starved.
inline constexpr int kMetricsThreadNice = 10;
// Sets the calling thread's niceness to kMetricsThreadNice.
void LowerThisThreadsPriority();

// Ownership: owns the HTTP server, its listening socket and its threads. Thread-safety: Bind,
// Start and the destructor run on one thread (the master's main thread); `render` runs on the
// endpoint's threads.
class MetricsEndpoint {
 public:
  // Binds `host`:`port` (port 0: any free port; see port()), to serve HTTPS when `tls` is
  // enabled (its files are read by Start). Creates no thread. Unavailable, naming the address
  // and --metrics_port, when it cannot bind; InvalidArgument, naming the flags, for a bad
  // combination of files.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Bind(const std::string& host, int port,
                                                               const TlsFiles& tls = {});
  ~MetricsEndpoint();  // stops answering and joins the threads

  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  int port() const { return port_; }
  // The listening socket, which a forked child must close (it is not the child's to keep open).
  int listening_fd() const { return fd_; }

  // Starts answering: GET /metrics is `render()` (called once per scrape, on the endpoint's
  // thread). With TLS, reads the certificate, key and CA first: the master calls Start after
  // forking the zygote, so the key never enters the zygote's or the workers' memory.
  // InvalidArgument, naming the flags and OpenSSL's reason, when they cannot serve TLS (then
  // nothing answers). Call once.
  absl::Status Start(std::function<std::string()> render);

 private:
  MetricsEndpoint(std::unique_ptr<httplib::Server> server, TlsFiles tls);

  std::unique_ptr<httplib::Server> server_;
  TlsFiles tls_;
  int port_ = 0;
  int fd_ = -1;
  std::thread thread_;
};

}  // namespace kiln

#endif  // KILN_SERVER_METRICS_METRICS_ENDPOINT_H_
