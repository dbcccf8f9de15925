// nginx as the gRPC load balancer in front of kiln replicas on loopback, for `kiln-bench lb`:
// the configuration it runs (the directives of deploy/nginx/kiln-grpc.conf, on loopback ports),
// and the nginx process, reconfigured the way an operator does it: a new upstream list, the
// configuration tested, then SIGHUP, so that the old worker finishes its requests while a new one
// takes the new connections.
#ifndef KILN_BENCH_NGINX_BALANCER_H_
#define KILN_BENCH_NGINX_BALANCER_H_

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/server_launcher.h"

namespace kiln::bench {

// The whole nginx.conf of a balancer listening (HTTP/2, cleartext) on 127.0.0.1:`listen_port`
// and passing every call round-robin to the upstreams 127.0.0.1:`upstream_ports`, with pid file,
// logs and temporary paths under `dir`. Its proxy directives are kNginxProxyDirectives.
std::string NginxConfig(int listen_port, const std::vector<int>& upstream_ports,
                        const std::string& dir);

// The directives of the `upstream` and `location` blocks that make nginx a gRPC balancer with
// keepalive and passive failover, one per line, as deploy/nginx/kiln-grpc.conf has them.
extern const char* const kNginxProxyDirectives[];

// The nginx executable to use for --nginx=`flag`: as given when it has a '/', else found in
// `path_env` and then in /usr/sbin (where Debian puts it, often not in a user's PATH); "" when
// there is none.
std::string FindNginx(const std::string& flag, const std::string& path_env);

// "nginx/1.22.1" from `nginx -v` of `binary`; the error says why not.
absl::StatusOr<std::string> NginxVersion(const std::string& binary);

// One nginx master (daemon off, one worker process) and its configuration file.
//
// Ownership: owns the process (a LaunchedServer: its own process group, killed if this process
// dies) and the files it writes in `dir`. Thread-compatible: call from one thread.
class NginxBalancer {
 public:
  // Writes the configuration, tests it (`nginx -t`) and starts nginx; returns once a worker
  // process runs. The error carries nginx's own message.
  static absl::StatusOr<std::unique_ptr<NginxBalancer>> Start(const std::string& binary,
                                                              const std::string& dir,
                                                              int listen_port,
                                                              const std::vector<int>& upstreams);
  ~NginxBalancer();  // SIGKILLs what is left (Stop() first for a graceful end)
  NginxBalancer(const NginxBalancer&) = delete;
  NginxBalancer& operator=(const NginxBalancer&) = delete;

  int port() const { return port_; }
  const std::vector<int>& upstreams() const { return upstreams_; }
  pid_t master() const { return process_->pid(); }

  // Rewrites the configuration with `upstreams`, tests it, and sends SIGHUP to the master;
  // returns the worker processes of the previous configuration once a new worker runs. Those
  // finish the calls they hold (sending clients GOAWAY) and exit on their own; WaitExited tells
  // when. A configuration nginx rejects leaves the running one as it was.
  absl::StatusOr<std::vector<pid_t>> Reload(const std::vector<int>& upstreams,
                                            std::chrono::milliseconds timeout);

  // True once none of `workers` is alive (they exit within worker_shutdown_timeout).
  static bool WaitExited(const std::vector<pid_t>& workers, std::chrono::milliseconds timeout);

  // SIGQUIT (graceful shutdown), then LaunchedServer::Stop's TERM and KILL as needed.
  absl::Status Stop();

 private:
  NginxBalancer(std::string binary, std::string dir, int port);
  absl::Status WriteAndTest(const std::vector<int>& upstreams) const;
  std::vector<pid_t> Workers() const;

  std::string binary_;
  std::string dir_;
  std::string conf_path_;
  int port_;
  std::vector<int> upstreams_;
  std::unique_ptr<LaunchedServer> process_;
};

}  // namespace kiln::bench

#endif  // KILN_BENCH_NGINX_BALANCER_H_
