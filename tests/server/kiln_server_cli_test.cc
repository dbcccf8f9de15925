// Drives the real kiln-server binary from outside, as a user does.
#include <catch2/catch.hpp>
#include <string>

#include "tests/run_command.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::CommandResult;
using kiln::testing::RunCommand;

const std::string kServer = KILN_SERVER_BINARY;

TEST_CASE("--help lists kiln's flags and glog's, and exits 0", "[server][cli]") {
  CommandResult result = RunCommand(kServer + " --help");
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.output, Contains("model_repository"));
  CHECK_THAT(result.output, Contains("--logtostderr"));
  CHECK_THAT(result.output, Contains("--vmodule"));
  // LibTorch's own gflags (caffe2_*) stay out of the help.
  CHECK_THAT(result.output, !Contains("caffe2"));
}

TEST_CASE("a missing repository exits 1 with the reason", "[server][cli]") {
  CommandResult result = RunCommand(kServer + " --model_repository=/nonexistent/kiln-models");
  CHECK(result.exit_code == 1);
  CHECK_THAT(result.output, Contains("/nonexistent/kiln-models is not a directory"));
}

TEST_CASE("a stray argument exits 2 pointing at --help", "[server][cli]") {
  CommandResult result = RunCommand(kServer + " models");
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.output, Contains("unexpected argument 'models'"));
}

TEST_CASE("the demo repository loads with every weight shared from the mapping",
          "[server][cli][demo]") {
  CommandResult result = RunCommand(kServer + " --model_repository=" + kiln::testing::ModelsDir());
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.output, Contains("4 model(s)"));
  CHECK_THAT(result.output, Contains("loaded resnet50 v1"));
  CHECK_THAT(result.output, Contains("(320 tensors shared, 0 copied)"));
  CHECK_THAT(result.output, Contains("(28 tensors shared, 0 copied)"));
}

}  // namespace
}  // namespace kiln
