// Proves the manifests in deploy/kubernetes are valid offline: Kubernetes' schemas (unknown
// fields included) through kubernetes-models, KServe's required fields, and kiln's rules across
// the objects, all in tests/deploy/k8s/validate_manifests.mjs (node, with the npm packages
// scripts/setup.sh installs); and that the validator fails on broken copies, naming the problem.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/deploy/deploy_files.h"
#include "tests/run_command.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::CommandResult;
using kiln::testing::ReadSourceFile;
using kiln::testing::ReplaceOnce;
using kiln::testing::SourcePath;
using kiln::testing::TempDir;

// The manifests' file names, sorted.
std::vector<std::string> ManifestNames() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(SourcePath("deploy/kubernetes"))) {
    if (entry.path().extension() == ".yaml") names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

CommandResult Validate(const std::string& dir, const std::vector<std::string>& names) {
  std::string command = "node '" + SourcePath("tests/deploy/k8s/validate_manifests.mjs") + "'";
  for (const std::string& name : names) command += " '" + dir + "/" + name + "'";
  return kiln::testing::RunCommand(command);
}

TEST_CASE("every manifest in deploy/kubernetes passes the offline schema and consistency checks",
          "[deploy]") {
  const std::vector<std::string> names = ManifestNames();
  REQUIRE(names.size() == 6);
  const CommandResult result = Validate(SourcePath("deploy/kubernetes"), names);
  INFO(result.output);
  CHECK(result.exit_code == 0);
  for (const char* object :
       {"ok Deployment/kiln-server\n", "ok Service/kiln-server\n",
        "ok PodDisruptionBudget/kiln-server\n", "ok HorizontalPodAutoscaler/kiln-server\n",
        "ok ServingRuntime/kiln\n", "ok InferenceService/kiln-demo\n"}) {
    CHECK_THAT(result.output, Contains(object));
  }
  CHECK_THAT(result.output, !Contains("error"));
}

TEST_CASE("the manifest validator rejects each broken copy naming the problem", "[deploy]") {
  struct Case {
    std::string file, from, to, expected;
  };
  const std::vector<Case> cases = {
      {"deployment.yaml", "replicas: 2", "replicas: \"two\"", "data/spec/replicas must be integer"},
      {"deployment.yaml", "imagePullPolicy:", "imagePullPolice:",
       "unknown field spec.template.spec.containers[0].imagePullPolice"},
      {"deployment.yaml", "replicas: 2", "replicas: [2", "YAML:"},
      {"deployment.yaml", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 20",
       "terminationGracePeriodSeconds 20 < preStop sleep 5 s + --drain_timeout_s 30 s"},
      {"deployment.yaml", "- --drain_timeout_s=30", "- --drain_timeout_s=60",
       "terminationGracePeriodSeconds 45 < preStop sleep 5 s + --drain_timeout_s 60 s"},
      {"deployment.yaml", "failureThreshold: 150", "failureThreshold: 30",
       "startupProbe allows 60 s"},
      {"deployment.yaml", "limits:\n              cpu: \"2\"\n              memory: 2Gi",
       "limits:\n              cpu: \"2\"", "no memory limit"},
      {"kserve-servingruntime.yaml", "    - grpc-v2", "    - v2",
       "spec.protocolVersions must include grpc-v2"},
      {"kserve-servingruntime.yaml", "name: h2c", "name: grpc", "no container port named h2c"},
      {"kserve-inferenceservice.yaml", "runtime: kiln", "runtime: kiln-v2",
       "runtime \"kiln-v2\" names no ServingRuntime"},
      {"kserve-inferenceservice.yaml", "protocolVersion: grpc-v2", "protocolVersion: v1",
       "protocolVersion must be grpc-v2"},
      {"service.yaml", "appProtocol: kubernetes.io/h2c", "appProtocol: http",
       "port grpc needs appProtocol kubernetes.io/h2c"},
      {"service.yaml", "targetPort: grpc", "targetPort: metrics", "port grpc targets metrics"},
      {"pdb.yaml", "      app.kubernetes.io/name: kiln-server",
       "      app.kubernetes.io/name: kiln",
       "PodDisruptionBudget/kiln-server: its selector matches the pods of no Deployment"},
      {"hpa.yaml", "    name: kiln-server\n  minReplicas", "    name: kiln\n  minReplicas",
       "scaleTargetRef apps/v1/Deployment/kiln is no Deployment"},
  };
  const std::vector<std::string> names = ManifestNames();
  for (const Case& c : cases) {
    INFO(c.file << ": " << c.from << " -> " << c.to);
    const TempDir dir;
    for (const std::string& name : names) {
      std::string text = ReadSourceFile("deploy/kubernetes/" + name);
      if (name == c.file) text = ReplaceOnce(text, c.from, c.to);
      dir.WriteFile(name, text);
    }
    const CommandResult result = Validate(dir.path(), names);
    INFO(result.output);
    CHECK(result.exit_code == 1);
    CHECK_THAT(result.output, Contains(c.expected));
  }
}

TEST_CASE("every kiln-server flag the manifests pass is one kiln-server accepts", "[deploy]") {
  const std::set<std::string> known = kiln::testing::KilnServerFlags(KILN_SERVER_BINARY);
  // The containers' args are list items "- --name" or "- --name=value", one per line.
  static const std::regex kArg(R"(^\s*- --([a-z0-9_]+)(=|$))");
  size_t checked = 0;
  for (const std::string& name : ManifestNames()) {
    std::istringstream lines(ReadSourceFile("deploy/kubernetes/" + name));
    for (std::string line; std::getline(lines, line);) {
      std::smatch match;
      if (!std::regex_search(line, match, kArg)) continue;
      INFO(name << ": --" << match[1]);
      CHECK(known.count(match[1]) == 1);
      ++checked;
    }
  }
  CHECK(checked >= 10);
}

}  // namespace
}  // namespace kiln
