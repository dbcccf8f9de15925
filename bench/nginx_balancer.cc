#include "bench/nginx_balancer.h"

#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/process.h"
#include "common/status_macros.h"

namespace kiln::bench {
namespace {

constexpr std::chrono::seconds kStopGrace(10);
constexpr std::chrono::seconds kStartTimeout(10);

// Runs `argv` to its end with its output in `log_path`; returns its exit and its output.
absl::StatusOr<std::pair<ExitStatus, std::string>> RunToEnd(const std::vector<std::string>& argv,
                                                            const std::string& log_path) {
  ASSIGN_OR_RETURN(const pid_t pid, SpawnInProcessGroup(argv, nullptr, log_path));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError(absl::StrCat("waitpid of ", argv[0]));
  }
  ExitStatus exit;
  exit.signaled = WIFSIGNALED(status);
  exit.code = exit.signaled ? WTERMSIG(status) : WEXITSTATUS(status);
  std::ifstream in(log_path);
  std::stringstream text;
  text << in.rdbuf();
  return std::make_pair(exit, text.str());
}

// `pid` exists and is not a zombie.
bool Alive(pid_t pid) {
  const std::vector<std::string> stat = ProcStatFields(pid);
  return !stat.empty() && stat[0] != "Z";
}

// The nginx command line for `dir`'s configuration: its own prefix, error log and pid file, in
// the foreground (the master is the process we started, so it can be watched and signalled).
std::vector<std::string> NginxArgv(const std::string& binary, const std::string& dir,
                                   const std::string& conf) {
  return {binary, "-p", dir, "-c", conf, "-e", dir + "/error.log", "-g", "daemon off;"};
}

}  // namespace

const char* const kNginxProxyDirectives[] = {
    // Connections to the replicas stay open between calls (HTTP/2, many calls each).
    "keepalive 32;",
    "keepalive_timeout 60s;",
    "grpc_pass grpc://kiln;",
    // Passive failover: a replica that refuses or drops the connection, or does not answer the
    // connect in time, is skipped and the call goes to the next one. A call a replica accepted
    // is never retried (it may have run).
    "grpc_next_upstream error timeout;",
    "grpc_next_upstream_tries 3;",
    "grpc_connect_timeout 1s;",
    "grpc_read_timeout 300s;",
    "grpc_send_timeout 300s;",
    "grpc_socket_keepalive on;",
    nullptr,
};

std::string NginxConfig(int listen_port, const std::vector<int>& upstream_ports,
                        const std::string& dir) {
  std::string servers;
  for (const int port : upstream_ports) {
    absl::StrAppend(&servers, "    server 127.0.0.1:", port, " max_fails=1 fail_timeout=5s;\n");
  }
  std::string upstream_directives, location_directives;
  for (const char* const* d = kNginxProxyDirectives; *d != nullptr; ++d) {
    const bool upstream = absl::StartsWith(*d, "keepalive");
    absl::StrAppend(upstream ? &upstream_directives : &location_directives,
                    upstream ? "    " : "      ", *d, "\n");
  }
  return absl::StrCat(
      "# Written by kiln-bench lb: nginx as the gRPC load balancer of kiln replicas on loopback.\n"
      "worker_processes 1;\n"
      // Old workers get this long after a reload to finish their calls.
      "worker_shutdown_timeout 30s;\n"
      "pid ",
      dir, "/nginx.pid;\n",  //
      "error_log ", dir, "/error.log notice;\n",
      "events {\n  worker_connections 1024;\n}\n"
      "http {\n"
      "  access_log off;\n"
      "  client_body_temp_path ",
      dir, "/client_body;\n",                      //
      "  proxy_temp_path ", dir, "/proxy;\n",      //
      "  fastcgi_temp_path ", dir, "/fastcgi;\n",  //
      "  uwsgi_temp_path ", dir, "/uwsgi;\n",      //
      "  scgi_temp_path ", dir, "/scgi;\n",        //
      "  upstream kiln {\n", servers, upstream_directives, "  }\n",
      "  server {\n"
      "    listen 127.0.0.1:",
      listen_port, " http2;\n",  //
      "    location / {\n", location_directives, "    }\n  }\n}\n");
}

std::string FindNginx(const std::string& flag, const std::string& path_env) {
  if (flag.find('/') != std::string::npos) return IsExecutableFile(flag) ? flag : "";
  std::string found = FindExecutable(flag, path_env);
  if (found.empty()) found = FindExecutable(flag, "/usr/sbin");
  return found;
}

absl::StatusOr<std::string> NginxVersion(const std::string& binary) {
  ASSIGN_OR_RETURN(std::string dir, MakeTempDir("kiln-nginx-version"));
  auto result = RunToEnd({binary, "-v"}, dir + "/out");
  std::error_code error;
  std::filesystem::remove_all(dir, error);
  RETURN_IF_ERROR(result.status());
  // "nginx version: nginx/1.22.1\n"
  std::string text(absl::StripAsciiWhitespace(result->second));
  const size_t at = text.find("nginx/");
  if (result->first.code != 0 || at == std::string::npos) {
    return absl::FailedPreconditionError(absl::StrCat(binary, " -v: ", text));
  }
  return text.substr(at);
}

NginxBalancer::NginxBalancer(std::string binary, std::string dir, int port)
    : binary_(std::move(binary)),
      // nginx reads relative paths against its prefix (-p), which is this directory.
      dir_(std::filesystem::absolute(dir).string()),
      conf_path_(dir_ + "/nginx.conf"),
      port_(port) {}

NginxBalancer::~NginxBalancer() = default;  // ~LaunchedServer kills the group

absl::Status NginxBalancer::WriteAndTest(const std::vector<int>& upstreams) const {
  const std::string next = conf_path_ + ".next";
  {
    std::ofstream out(next, std::ios::trunc);
    out << NginxConfig(port_, upstreams, dir_);
    if (!out.flush()) return absl::InternalError(absl::StrCat("writing ", next, " failed"));
  }
  std::vector<std::string> test = NginxArgv(binary_, dir_, next);
  test.insert(test.begin() + 1, "-t");
  ASSIGN_OR_RETURN(const auto tested, RunToEnd(test, dir_ + "/nginx-t.log"));
  if (!(tested.first == ExitStatus{})) {
    return absl::FailedPreconditionError(absl::StrCat(
        "nginx -t rejected ", next, " (", tested.first.Describe(), "): ", tested.second));
  }
  std::error_code error;
  std::filesystem::rename(next, conf_path_, error);
  if (error) return absl::InternalError(absl::StrCat("renaming ", next, ": ", error.message()));
  return absl::OkStatus();
}

std::vector<pid_t> NginxBalancer::Workers() const {
  std::vector<pid_t> workers;
  for (const pid_t child : ChildrenOf(process_->pid())) {
    if (Alive(child)) workers.push_back(child);
  }
  return workers;
}

absl::StatusOr<std::unique_ptr<NginxBalancer>> NginxBalancer::Start(
    const std::string& binary, const std::string& dir, int listen_port,
    const std::vector<int>& upstreams) {
  std::unique_ptr<NginxBalancer> balancer(new NginxBalancer(binary, dir, listen_port));
  RETURN_IF_ERROR(balancer->WriteAndTest(upstreams));
  ASSIGN_OR_RETURN(
      balancer->process_,
      LaunchedServer::Start(NginxArgv(binary, dir, balancer->conf_path_), dir + "/nginx.log"));
  balancer->upstreams_ = upstreams;
  NginxBalancer* b = balancer.get();
  if (!PollUntil([b] { return !b->Workers().empty() || b->process_->PeekExit(); },
                 std::chrono::duration_cast<std::chrono::milliseconds>(kStartTimeout)) ||
      b->process_->PeekExit()) {
    return absl::UnavailableError(
        absl::StrCat("nginx did not start a worker: ", FileTail(dir + "/error.log", 5)));
  }
  return balancer;
}

absl::StatusOr<std::vector<pid_t>> NginxBalancer::Reload(const std::vector<int>& upstreams,
                                                         std::chrono::milliseconds timeout) {
  RETURN_IF_ERROR(WriteAndTest(upstreams));
  const std::vector<pid_t> old = Workers();
  if (kill(process_->pid(), SIGHUP) != 0) return absl::InternalError("kill(nginx, SIGHUP)");
  const bool reloaded = PollUntil(
      [&] {
        for (const pid_t worker : Workers()) {
          if (std::find(old.begin(), old.end(), worker) == old.end()) return true;
        }
        return false;
      },
      timeout);
  if (!reloaded) {
    return absl::DeadlineExceededError(
        absl::StrCat("nginx started no worker of the new "
                     "configuration within ",
                     timeout.count(), " ms: ", FileTail(dir_ + "/error.log", 5)));
  }
  upstreams_ = upstreams;
  return old;
}

bool NginxBalancer::WaitExited(const std::vector<pid_t>& workers,
                               std::chrono::milliseconds timeout) {
  return PollUntil([&] { return std::none_of(workers.begin(), workers.end(), Alive); }, timeout);
}

absl::Status NginxBalancer::Stop() {
  kill(process_->pid(), SIGQUIT);
  PollUntil([this] { return process_->PeekExit().has_value(); },
            std::chrono::duration_cast<std::chrono::milliseconds>(kStopGrace));
  return process_->Stop(kStopGrace).status();
}

}  // namespace kiln::bench
