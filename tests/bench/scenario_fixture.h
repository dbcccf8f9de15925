// What the scenario commands' flag tests run against: a model repository holding one (empty)
// model and an executable stand-in for kiln-server, both in a scratch directory.
#ifndef KILN_TESTS_BENCH_SCENARIO_FIXTURE_H_
#define KILN_TESTS_BENCH_SCENARIO_FIXTURE_H_

#include <sys/stat.h>

#include <string>
#include <vector>

#include "tests/test_paths.h"

namespace kiln::bench::testing {

// Ownership: owns its scratch directory (removed with it). Thread-safety: none needed.
struct ScenarioFixture {
  kiln::testing::TempDir dir;
  std::string repo;
  std::string server;
  ScenarioFixture() {
    repo = dir.path() + "/repo";
    dir.WriteFile("repo/mlp/config.pbtxt", "name: \"mlp\"\n");
    server = dir.WriteFile("bin/kiln-server", "#!/bin/sh\nexit 0\n");
    chmod(server.c_str(), 0755);
  }
  // The required flags plus `more`.
  std::vector<std::string> Args(std::vector<std::string> more) const {
    std::vector<std::string> args = {"--model_repository=" + repo, "--model=mlp",
                                     "--server=" + server};
    args.insert(args.end(), more.begin(), more.end());
    return args;
  }
};

}  // namespace kiln::bench::testing

#endif  // KILN_TESTS_BENCH_SCENARIO_FIXTURE_H_
