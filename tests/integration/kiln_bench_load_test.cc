// Integration test: `kiln-bench load` (run in-process through RunLoadCommand) against the real
// kiln-server binary with the demo mlp model and one worker. The server runs on a free loopback
// port with a lock directory of its own; the ServerProcess destructor kills its whole process
// group. Every wait is bounded; there are no fixed sleeps.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/args.h"
#include "bench/load_command.h"
#include "tests/integration/server_process.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using kiln::testing::ServerConfig;
using kiln::testing::ServerProcess;
using kiln::testing::TempDir;

// The binary under test: the build's kiln-server, or $KILN_SERVER_BINARY when set.
const std::string kServer = [] {
  const char* env = std::getenv("KILN_SERVER_BINARY");
  return std::string(env != nullptr && *env != '\0' ? env : KILN_SERVER_BINARY);
}();

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST_CASE("kiln-bench load runs a closed loop against a real server", "[integration][load]") {
  const std::string config = ReadText(kiln::testing::ModelsDir() + "/mlp/config.pbtxt");
  REQUIRE(!config.empty());
  TempDir repo_dir;
  ServerConfig server_config;
  server_config.binary = kServer;
  server_config.model_repository = kiln::testing::MakeRepository(repo_dir, {{"mlp", config}});
  server_config.workers = 1;
  ServerProcess server(std::move(server_config));
  if (!server.WaitServing(std::chrono::seconds(120))) {
    FAIL("kiln-server did not become SERVING\n--- log ---\n" << server.log());
  }

  TempDir out_dir;
  const std::string json_path = out_dir.path() + "/load.json";
  const std::string csv_path = out_dir.path() + "/load.csv";
  const int exit_code = bench::RunLoadCommand(
      {"--addr=" + server.address(), "--model=mlp", "--mode=closed", "--concurrency=2",
       "--requests=200", "--timeout_ms=10000", "--json=" + json_path, "--csv=" + csv_path});
  REQUIRE(exit_code == bench::kExitOk);

  const nlohmann::json json = nlohmann::json::parse(ReadText(json_path));
  INFO(json.dump(1) << "\n--- server log ---\n" << server.log());
  CHECK(json["model"] == "mlp");
  CHECK(json["mode"] == "closed");
  CHECK(json["concurrency"] == 2);
  CHECK(json["sent"] == 200);
  CHECK(json["completed"] == 200);
  CHECK(json["ok"] == 200);
  CHECK(json["errors"].empty());
  const nlohmann::json& latency = json["latency_ms"];
  CHECK(latency["count"] == 200);
  // Sane: mlp is tiny; a warm worker answers well within a second even on a busy 2-core box.
  CHECK(latency["p50"].get<double>() > 0);
  CHECK(latency["p50"].get<double>() < 1000);
  CHECK(latency["min"].get<double>() <= latency["p50"].get<double>());
  CHECK(latency["p50"].get<double>() <= latency["p99"].get<double>());
  CHECK(latency["p99"].get<double>() <= latency["max"].get<double>());
  CHECK(json["throughput_rps"].get<double>() > 0);

  std::istringstream csv(ReadText(csv_path));
  std::vector<std::string> lines;
  for (std::string line; std::getline(csv, line);) lines.push_back(line);
  REQUIRE(lines.size() == 201);
  CHECK(lines[0] == "scheduled_ms,sent_ms,latency_ms,code");
  for (size_t i = 1; i < lines.size(); ++i) {
    CHECK(lines[i].size() > 3);
    CHECK(lines[i].substr(lines[i].size() - 3) == ",OK");
  }
}

}  // namespace
}  // namespace kiln
