// Proves the monitoring files in deploy/ work against what kiln exports: every query of the
// Grafana dashboard names only metrics kiln exports and parses as PromQL (promtool), and the
// example Prometheus config is valid.
#include <catch2/catch.hpp>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/deploy/deploy_files.h"
#include "tests/run_command.h"
#include "tests/test_paths.h"

namespace {

// Every metric family kiln exports (histograms by their base name).
const std::set<std::string> kExportedMetrics = {
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
    "nv_inference_pending_request_count",
    "kiln_request_duration_seconds",
    "kiln_tokenize_duration_seconds",
    "kiln_request_batch_size",
    "kiln_cold_shape_hits_total",
    "kiln_padded_rows_total",
    "kiln_padded_length_requests_total",
    "kiln_split_requests_total",
    "kiln_worker_restarts_total",
    "kiln_worker_respawn_duration_seconds",
    "kiln_workers",
    "kiln_workers_target",
    "kiln_model_ready",
    "kiln_server_state",
    "kiln_warmup_first_call_seconds",
    "kiln_warmup_steady_seconds",
    "kiln_warmup_first_to_steady_ratio",
    "kiln_warmup_calls_to_settle",
    "kiln_warmup_peak_memory_bytes",
    "kiln_warmup_duration_seconds",
    "kiln_tokenizer_warmup_first_call_seconds",
    "kiln_tokenizer_warmup_steady_seconds",
    "kiln_readiness_check_p95_seconds",
    "kiln_readiness_check_cpu_p95_seconds",
    "kiln_readiness_check_cpu_median_seconds",
    "kiln_readiness_check_limit_seconds",
    "kiln_readiness_check_passed",
    "kiln_startup_phase_duration_seconds",
    "kiln_startup_time_to_serving_seconds",
    "kiln_process_pss_bytes",
    "kiln_process_private_bytes",
    "kiln_process_shared_bytes",
    "kiln_worker_memory_budget_bytes",
    "kiln_worker_memory_headroom_bytes",
    "kiln_model_weights_mapped",
    "kiln_memory_pss_bytes",
    "kiln_memory_limit_bytes",
    "kiln_build_info",
};

const std::set<std::string> kHistograms = {
    "kiln_request_duration_seconds",
    "kiln_tokenize_duration_seconds",
    "kiln_request_batch_size",
    "kiln_worker_respawn_duration_seconds",
};

// Every "expr" of every element of every "targets" array, anywhere in the document (panels,
// panels inside rows, library panels alike).
void CollectExprs(const nlohmann::json& node, std::vector<std::string>* exprs) {
  if (node.is_object()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (it.key() == "targets" && it.value().is_array()) {
        for (const nlohmann::json& target : it.value()) {
          if (target.is_object() && target.contains("expr") && target["expr"].is_string()) {
            exprs->push_back(target["expr"].get<std::string>());
          }
        }
      }
      CollectExprs(it.value(), exprs);
    }
  } else if (node.is_array()) {
    for (const nlohmann::json& element : node) CollectExprs(element, exprs);
  }
}

// The kiln_* and nv_inference_* names an expression mentions, histogram series folded into
// their family (kiln_request_duration_seconds_bucket -> kiln_request_duration_seconds).
std::set<std::string> MetricNames(const std::string& expr) {
  static const std::regex kToken("[a-z_][a-z0-9_]*");  // digits too: ..._p95_seconds
  std::set<std::string> names;
  for (std::sregex_iterator it(expr.begin(), expr.end(), kToken), end; it != end; ++it) {
    std::string name = it->str();
    if (name.rfind("kiln_", 0) != 0 && name.rfind("nv_inference_", 0) != 0) continue;
    for (const std::string suffix : {"_bucket", "_sum", "_count"}) {
      if (name.size() <= suffix.size()) continue;
      if (name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
      const std::string base = name.substr(0, name.size() - suffix.size());
      if (kHistograms.count(base) == 1) name = base;
      break;
    }
    names.insert(name);
  }
  return names;
}

std::string ReplaceAll(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

// The expression Prometheus would get from Grafana, with typical values for its variables.
std::string SubstituteGrafanaVariables(std::string expr) {
  const std::vector<std::pair<std::string, std::string>> variables = {
      {"$__rate_interval", "1m"}, {"$__range", "1h"}, {"$__interval", "1m"},
      {"${model}", ".*"},         {"$model", ".*"},
  };
  for (const auto& [name, value] : variables) expr = ReplaceAll(expr, name, value);
  return expr;
}

// A YAML double-quoted scalar holding `text`.
std::string YamlQuoted(const std::string& text) {
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '\\' || c == '"') {
      quoted += '\\';
      quoted += c;
    } else if (c == '\n') {
      quoted += "\\n";
    } else {
      quoted += c;
    }
  }
  return quoted + "\"";
}

TEST_CASE("the Grafana dashboard's queries are valid PromQL over metrics kiln exports",
          "[deploy]") {
  const nlohmann::json dashboard =
      nlohmann::json::parse(kiln::testing::ReadSourceFile("deploy/grafana/kiln-dashboard.json"));
  CHECK(dashboard.value("uid", "") == "kiln-overview");
  CHECK(dashboard.value("title", "") == "kiln: model serving");

  std::vector<std::string> exprs;
  CollectExprs(dashboard, &exprs);
  REQUIRE(exprs.size() >= 12);

  for (const std::string& expr : exprs) {
    for (const std::string& name : MetricNames(expr)) {
      INFO("the query " << expr << " names " << name << ", which kiln does not export");
      CHECK(kExportedMetrics.count(name) == 1);
    }
  }

  // promtool parses each expression as the expression of a recording rule.
  std::string rules = "groups:\n  - name: dashboard\n    rules:\n";
  for (size_t i = 0; i < exprs.size(); ++i) {
    rules += "      - record: dashboard_expr_" + std::to_string(i) + "\n";
    rules += "        expr: " + YamlQuoted(SubstituteGrafanaVariables(exprs[i])) + "\n";
  }
  const kiln::testing::TempDir dir;
  const std::string rules_path = dir.WriteFile("dashboard_rules.yml", rules);
  const kiln::testing::CommandResult check =
      kiln::testing::RunCommand("promtool check rules '" + rules_path + "'");
  INFO(rules);
  INFO(check.output);
  CHECK(check.exit_code == 0);
}

TEST_CASE("the example Prometheus config scraping kiln is a valid Prometheus config", "[deploy]") {
  const std::string path = kiln::testing::SourcePath("deploy/prometheus/prometheus.yml");
  const kiln::testing::CommandResult check =
      kiln::testing::RunCommand("promtool check config '" + path + "'");
  INFO(check.output);
  CHECK(check.exit_code == 0);
}

}  // namespace
