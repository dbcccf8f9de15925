// Drives the real kiln-server binary from outside, as a user does: its command line only (the
// serving tests are in kiln_server_test.cc).
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "tests/run_command.h"
#include "tests/skip.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::CommandResult;
using kiln::testing::RunCommand;

const std::string kServer = KILN_SERVER_BINARY;

TEST_CASE("kiln-server --help lists kiln's flags and glog's, and exits 0", "[server][cli]") {
  CommandResult result = RunCommand(kServer + " --help");
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.output, Contains("model_repository"));
  CHECK_THAT(result.output, Contains("--logtostderr"));
  CHECK_THAT(result.output, Contains("--vmodule"));
  // LibTorch's own gflags (caffe2_*) stay out of the help.
  CHECK_THAT(result.output, !Contains("caffe2"));
}

TEST_CASE("a missing repository exits 1 with the reason", "[server][cli]") {
  // --port=0 takes no port lock, so this never collides with a server on the default port.
  CommandResult result =
      RunCommand(kServer + " --port=0 --model_repository=/nonexistent/kiln-models");
  CHECK(result.exit_code == 1);
  CHECK_THAT(result.output, Contains("/nonexistent/kiln-models is not a directory"));
}

TEST_CASE("a stray argument exits 2 pointing at --help", "[server][cli]") {
  CommandResult result = RunCommand(kServer + " models");
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.output, Contains("unexpected argument 'models'"));
}

TEST_CASE("a bad --warmup value exits 2 naming the flag", "[server][cli]") {
  CommandResult result =
      RunCommand(kServer + " --warmup=bogus --model_repository=" + kiln::testing::ModelsDir());
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.output, Contains("--warmup must be on or off, got 'bogus'"));
}

TEST_CASE("out-of-range gRPC limits exit 2 naming the flag and its range", "[server][cli]") {
  const std::string repository = " --model_repository=" + kiln::testing::ModelsDir();
  CommandResult memory = RunCommand(kServer + " --grpc_memory_mb=-1" + repository);
  CHECK(memory.exit_code == 2);
  CHECK_THAT(memory.output, Contains("--grpc_memory_mb must be in [0, 1048576] (0: unbounded)"));
  CommandResult streams = RunCommand(kServer + " --max_concurrent_streams=0" + repository);
  CHECK(streams.exit_code == 2);
  CHECK_THAT(streams.output, Contains("--max_concurrent_streams must be in [1, 100000]"));
}

TEST_CASE(
    "a symbolic link planted where the port lock goes stops the start: kiln exits 1 and "
    "writes nothing through it",
    "[server][cli]") {
  // The attack of issue #15: a user who can write to the lock directory links the lock path to a
  // file the server may write (as root, any file).
  kiln::testing::TempDir dir, elsewhere;
  const std::string victim = elsewhere.WriteFile("precious", "do not truncate me\n");
  const std::string lock = dir.path() + "/kiln-server-18661.lock";
  REQUIRE(symlink(victim.c_str(), lock.c_str()) == 0);
  CommandResult result =
      RunCommand(kServer + " --port=18661 --metrics_port=0 --lock_dir=" + dir.path() +
                 " --model_repository=" + kiln::testing::ModelsDir() + " 2>&1");
  CHECK(result.exit_code == 1);
  CHECK_THAT(result.output, Contains("lock file " + lock + " is a symbolic link"));
  std::ifstream in(victim);
  std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(contents == "do not truncate me\n");
}

TEST_CASE("a --state_dir other users can write to stops the start with the reason",
          "[server][cli]") {
  kiln::testing::TempDir dir;
  REQUIRE(chmod(dir.path().c_str(), 01777) == 0);
  CommandResult result =
      RunCommand(kServer + " --port=0 --metrics_port=0 --state_dir=" + dir.path() +
                 " --model_repository=" + kiln::testing::ModelsDir() + " 2>&1");
  CHECK(result.exit_code == 1);
  CHECK_THAT(result.output, Contains("state directory " + dir.path()));
  CHECK_THAT(result.output, Contains("lets other users create files"));
}

TEST_CASE("TLS flags that do not make sense stop the start, naming the flag or the file",
          "[server][cli][tls]") {
  kiln::testing::TempDir dir;
  const std::string not_pem = dir.WriteFile("cert.txt", "not a certificate\n");
  const std::string base =
      kServer + " --port=0 --metrics_port=0 --model_repository=" + kiln::testing::ModelsDir();
  SECTION("a certificate without its key") {
    CommandResult result = RunCommand(base + " --tls_cert=" + not_pem + " 2>&1");
    CHECK(result.exit_code == 2);
    CHECK_THAT(result.output, Contains("--tls_cert and --tls_key go together"));
  }
  SECTION("a CA without a certificate") {
    CommandResult result = RunCommand(base + " --tls_ca=" + not_pem + " 2>&1");
    CHECK(result.exit_code == 2);
    CHECK_THAT(result.output, Contains("--tls_ca (require client certificates) needs"));
  }
  SECTION("a file that is missing, or not PEM") {
    CommandResult missing =
        RunCommand(base + " --tls_cert=/nonexistent/kiln.crt --tls_key=" + not_pem + " 2>&1");
    CHECK(missing.exit_code == 1);
    CHECK_THAT(missing.output, Contains("--tls_cert=/nonexistent/kiln.crt: cannot be read"));
    CommandResult garbage =
        RunCommand(base + " --tls_cert=" + not_pem + " --tls_key=" + not_pem + " 2>&1");
    CHECK(garbage.exit_code == 1);
    CHECK_THAT(garbage.output, Contains(not_pem + ": no PEM block"));
  }
  SECTION("a --model_control_mode kiln does not have") {
    CommandResult result = RunCommand(base + " --model_control_mode=poll 2>&1");
    CHECK(result.exit_code == 2);
    CHECK_THAT(result.output, Contains("--model_control_mode must be none or explicit"));
  }
}

// The libraries a linker response file names (one path per line, between the flags).
std::vector<std::string> LibrariesOf(const std::string& response_file) {
  std::ifstream in(response_file);
  std::vector<std::string> libraries;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] == '/') libraries.push_back(line.substr(line.rfind('/') + 1));
  }
  return libraries;
}

// The shared libraries `binary` loads, in the order of the dynamic linker's search scope (what
// ldd prints: "\tname => path (address)"), the vDSO left out.
std::vector<std::string> LoadOrder(const std::string& binary) {
  CommandResult result = RunCommand("LD_TRACE_LOADED_OBJECTS=1 " + binary);
  REQUIRE(result.exit_code == 0);
  std::istringstream lines(result.output);
  std::vector<std::string> names;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string name, arrow;
    if (words >> name >> arrow && arrow == "=>") names.push_back(name);
  }
  return names;
}

TEST_CASE("kiln-server names its busiest libraries first, and binds each strong symbol as before",
          "[server][cli]") {
  const std::string response_file = KILN_LOOKUP_ORDER_RSP;
  if (response_file.empty()) KILN_SKIP("built with a sanitizer: the default library order");
  const std::vector<std::string> first = LibrariesOf(response_file);
  // cmake/lookup_order.sh leaves the file empty where no order kept every strong definition.
  if (first.empty()) KILN_SKIP(response_file << " is empty: the build kept the default order");

  const std::vector<std::string> loaded = LoadOrder(kServer);
  REQUIRE(loaded.size() >= first.size());
  CHECK(std::vector<std::string>(loaded.begin(), loaded.begin() + first.size()) == first);
  // Else the check below would compare the default order with itself.
  CHECK(LoadOrder(KILN_SERVER_DEFAULT_ORDER_BINARY) != loaded);

  // Every reference kiln-server's libraries make binds to the library it binds to in the default
  // order, or (vague linkage) to another copy of the same weak definition.
  CommandResult check = RunCommand(std::string("bash ") + KILN_LOOKUP_ORDER_SCRIPT + " --check " +
                                   KILN_SERVER_DEFAULT_ORDER_BINARY + " " + kServer + " 2>&1");
  INFO(check.output);
  CHECK(check.exit_code == 0);
  CHECK_THAT(check.output, Contains("binds every reference as"));
}

}  // namespace
}  // namespace kiln
