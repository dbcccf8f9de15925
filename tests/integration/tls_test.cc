// TLS and mutual TLS on the real server (--tls_cert, --tls_key, --tls_ca), with certificates the
// test makes with the openssl command: a plaintext client is refused, a client that trusts the
// CA infers; with --tls_ca, only a client with a certificate from that CA gets in. The metrics
// port follows the same files (HTTPS, client certificates).
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <memory>
#include <string>

#include "httplib.h"
#include "tests/integration/server_test_util.h"
#include "tests/run_command.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::Config;
using kiln::testing::DemoConfig;
using kiln::testing::kStartup;
using kiln::testing::MlpRequest;
using kiln::testing::ReadText;
using kiln::testing::RunCommand;
using kiln::testing::ServerConfig;
using kiln::testing::ServerProcess;
using kiln::testing::Stub;
using kiln::testing::TempDir;
using std::chrono::seconds;

// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, signed by
// the CA; and a second CA with a client certificate of its own (which the server must refuse).
struct Certificates {
  explicit Certificates(const TempDir& dir) : dir(dir.path()) {
    const std::string script = R"(set -e
cd ")" + this->dir + R"("
ca() {  # ca NAME
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=kiln test $1" \
    -keyout $1.key -out $1.crt 2>/dev/null
}
leaf() {  # leaf NAME CA EXTENSIONS
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout $1.key -out $1.csr 2>/dev/null
  printf '%s\n' "$3" > $1.ext
  openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial -days 2 \
    -extfile $1.ext -out $1.crt 2>/dev/null
}
ca ca
ca other_ca
leaf server ca "subjectAltName=IP:127.0.0.1,DNS:localhost"
leaf client ca "extendedKeyUsage=clientAuth"
leaf stranger other_ca "extendedKeyUsage=clientAuth"
)";
    const kiln::testing::CommandResult made = RunCommand(script);
    INFO(made.output);
    REQUIRE(made.exit_code == 0);
  }
  std::string Path(const std::string& name) const { return dir + "/" + name; }
  std::string Pem(const std::string& name) const { return ReadText(Path(name)); }

  std::string dir;
};

// A channel to the server that trusts `ca`, presenting `client` ("" for none).
std::shared_ptr<grpc::Channel> TlsChannel(const Certificates& certs, int port,
                                          const std::string& ca, const std::string& client) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = certs.Pem(ca + ".crt");
  if (!client.empty()) {
    options.pem_cert_chain = certs.Pem(client + ".crt");
    options.pem_private_key = certs.Pem(client + ".key");
  }
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::SslCredentials(options));
}

// Whether ServerLive answers within 5 s (a refused handshake fails at once).
bool Live(const std::shared_ptr<grpc::Channel>& channel) {
  Stub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(5));
  inference::ServerLiveResponse response;
  return stub.ServerLive(&context, {}, &response).ok() && response.live();
}

// Waits, over `channel`, until the server answers SERVING (TLS: ServerProcess::WaitServing
// speaks plaintext).
void WaitServing(ServerProcess& server, const std::shared_ptr<grpc::Channel>& channel) {
  kiln::testing::HealthStub health(channel);
  const bool serving = kiln::PollUntil(
      [&] {
        return !server.IsRunning() ||
               kiln::testing::Health(health, "") == grpc::health::v1::HealthCheckResponse::SERVING;
      },
      kStartup, std::chrono::milliseconds(200));
  if (!serving || !server.IsRunning()) FAIL("not SERVING over TLS; log:\n" << server.log());
}

// GET /metrics over HTTPS, trusting the test CA, presenting `client` ("" for none): the HTTP
// status, or -1 when the connection or handshake failed.
int ScrapeStatus(const Certificates& certs, int port, const std::string& client) {
  std::unique_ptr<httplib::SSLClient> http =
      client.empty()
          ? std::make_unique<httplib::SSLClient>("127.0.0.1", port)
          : std::make_unique<httplib::SSLClient>("127.0.0.1", port, certs.Path(client + ".crt"),
                                                 certs.Path(client + ".key"));
  http->set_ca_cert_path(certs.Path("ca.crt").c_str());
  http->enable_server_certificate_verification(true);
  http->set_connection_timeout(10);
  httplib::Result result = http->Get("/metrics");
  return result ? result->status : -1;
}

ServerConfig TlsConfig(const std::string& repo, const Certificates& certs, bool mutual,
                       int metrics_port) {
  ServerConfig config = Config(repo, 1);
  config.extra_args = {"--tls_cert=" + certs.Path("server.crt"),
                       "--tls_key=" + certs.Path("server.key"),
                       "--metrics_port=" + std::to_string(metrics_port)};
  if (mutual) config.extra_args.push_back("--tls_ca=" + certs.Path("ca.crt"));
  return config;
}

TEST_CASE(
    "TLS: --tls_cert and --tls_key serve both ports over TLS and --tls_ca requires a client "
    "certificate from that CA",
    "[integration][server][tls]") {
  // A refused handshake closes the socket under the client's writes: OpenSSL's write() would
  // raise SIGPIPE in this process (kiln-server ignores it, as here).
  std::signal(SIGPIPE, SIG_IGN);
  TempDir repo_dir, cert_dir;
  const Certificates certs(cert_dir);
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  const int metrics_port = kiln::FreeLoopbackPort().value();

  SECTION("TLS") {
    ServerProcess server(TlsConfig(repo, certs, /*mutual=*/false, metrics_port));
    INFO("log:\n" << server.log());
    const auto channel = TlsChannel(certs, server.port(), "ca", "");
    WaitServing(server, channel);
    CHECK_THAT(server.log(), Contains("serving gRPC over TLS on"));
    Stub oip(channel);
    inference::ModelInferResponse response;
    CHECK(kiln::testing::Infer(oip, MlpRequest(2), &response, seconds(30)).ok());
    // A plaintext client, and one that does not trust the CA, get nothing.
    CHECK_FALSE(Live(kiln::testing::LoopbackChannel(server.port())));
    CHECK_FALSE(Live(TlsChannel(certs, server.port(), "other_ca", "")));
    // The metrics port speaks HTTPS only.
    CHECK(ScrapeStatus(certs, metrics_port, "") == 200);
    httplib::Client plain("127.0.0.1", metrics_port);
    plain.set_connection_timeout(5);
    plain.set_read_timeout(5);
    const httplib::Result scraped = plain.Get("/metrics");
    CHECK((!scraped || scraped->status != 200));
  }
  SECTION("mutual TLS") {
    ServerProcess server(TlsConfig(repo, certs, /*mutual=*/true, metrics_port));
    INFO("log:\n" << server.log());
    const auto channel = TlsChannel(certs, server.port(), "ca", "client");
    WaitServing(server, channel);
    CHECK_THAT(server.log(), Contains("serving gRPC over mutual TLS on"));
    Stub oip(channel);
    inference::ModelInferResponse response;
    CHECK(kiln::testing::Infer(oip, MlpRequest(1), &response, seconds(30)).ok());
    CHECK_FALSE(Live(TlsChannel(certs, server.port(), "ca", "")));          // no certificate
    CHECK_FALSE(Live(TlsChannel(certs, server.port(), "ca", "stranger")));  // another CA's
    CHECK(ScrapeStatus(certs, metrics_port, "client") == 200);
    CHECK(ScrapeStatus(certs, metrics_port, "") == -1);
    CHECK(ScrapeStatus(certs, metrics_port, "stranger") == -1);
  }
  SECTION("a key that is not the certificate's stops the start, naming the flags") {
    // Both files are PEM, so the check at start passes; the metrics endpoint loads them once the
    // zygote is forked (the key stays out of its memory) and refuses the pair.
    ServerConfig config = TlsConfig(repo, certs, /*mutual=*/false, metrics_port);
    config.extra_args[1] = "--tls_key=" + certs.Path("client.key");
    ServerProcess server(config);
    CHECK(server.WaitExit(kStartup) == 1);
    CHECK_THAT(server.log(),
               Contains("cannot serve metrics over TLS with --tls_cert=" +
                        certs.Path("server.crt") + " --tls_key=" + certs.Path("client.key")));
    CHECK_THAT(server.log(), Contains("is the key the certificate's?"));
  }
}

}  // namespace
}  // namespace kiln
