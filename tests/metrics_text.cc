#include "tests/metrics_text.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/run_command.h"

namespace kiln::testing {
namespace {

// Prints the samples as JSON, one object per sample.
constexpr char kParser[] = R"(
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        value = s.value if math.isfinite(s.value) else str(s.value)
        out.append({"family": family.name, "type": family.type, "name": s.name,
                    "labels": s.labels, "value": value})
print(json.dumps(out))
)";

bool Includes(const MetricLabels& have, const MetricLabels& want) {
  for (const auto& [name, value] : want) {
    const auto found = have.find(name);
    if (found == have.end() || found->second != value) return false;
  }
  return true;
}

std::string TempPath(const char* what) {
  char path[] = "/tmp/kiln-metrics-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) throw std::runtime_error(absl::StrCat("mkstemp for ", what, " failed"));
  close(fd);
  return path;
}

}  // namespace

ParsedMetrics ParsedMetrics::Parse(const std::string& text) {
  const std::string script = TempPath("the parser");
  const std::string input = TempPath("the text");
  std::ofstream(script) << kParser;
  std::ofstream(input) << text;
  const CommandResult result = RunCommand("/usr/bin/python3 " + script + " " + input);
  std::remove(script.c_str());
  std::remove(input.c_str());
  if (result.exit_code != 0) {
    throw std::runtime_error("prometheus_client could not parse the metrics: " + result.output);
  }
  ParsedMetrics parsed;
  for (const nlohmann::json& sample : nlohmann::json::parse(result.output)) {
    MetricSample& one = parsed.samples_.emplace_back();
    one.family = sample.at("family").get<std::string>();
    one.type = sample.at("type").get<std::string>();
    one.name = sample.at("name").get<std::string>();
    one.labels = sample.at("labels").get<MetricLabels>();
    one.value = sample.at("value").is_number() ? sample.at("value").get<double>() : NAN;
  }
  return parsed;
}

std::vector<MetricSample> ParsedMetrics::Matching(const std::string& name,
                                                  const MetricLabels& labels) const {
  std::vector<MetricSample> matching;
  for (const MetricSample& sample : samples_) {
    // prometheus_client names a counter's samples <family>_total even where the text has no
    // "_total" (Triton's nv_inference_* counters): the text's name matches them too.
    const bool named = sample.name == name || (sample.type == "counter" &&
                                               sample.name == name + "_total");
    if (named && Includes(sample.labels, labels)) matching.push_back(sample);
  }
  return matching;
}

std::optional<double> ParsedMetrics::Value(const std::string& name,
                                           const MetricLabels& labels) const {
  const std::vector<MetricSample> matching = Matching(name, labels);
  if (matching.empty()) return std::nullopt;
  if (matching.size() > 1) {
    throw std::runtime_error(absl::StrCat(matching.size(), " samples of ", name, " match"));
  }
  return matching.front().value;
}

double ParsedMetrics::Sum(const std::string& name, const MetricLabels& labels) const {
  double sum = 0;
  for (const MetricSample& sample : Matching(name, labels)) sum += sample.value;
  return sum;
}

absl::StatusOr<std::string> HttpGet(int port, const std::string& path, int timeout_ms,
                                    std::string* content_type) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(0, timeout_ms * 1000);
  client.set_read_timeout(timeout_ms / 1000, (timeout_ms % 1000) * 1000);
  const httplib::Result result = client.Get(path.c_str());
  if (!result) {
    return absl::UnavailableError(absl::StrCat("GET 127.0.0.1:", port, path, ": ",
                                               httplib::to_string(result.error())));
  }
  if (result->status != 200) {
    return absl::UnavailableError(
        absl::StrCat("GET 127.0.0.1:", port, path, ": HTTP ", result->status, ": ", result->body));
  }
  if (content_type != nullptr) *content_type = result->get_header_value("Content-Type");
  return result->body;
}

}  // namespace kiln::testing
