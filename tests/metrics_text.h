// Reading kiln's metrics in tests: a scrape over loopback HTTP, and the text parsed by a real
// parser (Python's prometheus_client, Debian's python3-prometheus-client), not by our own code.
#ifndef KILN_TESTS_METRICS_TEXT_H_
#define KILN_TESTS_METRICS_TEXT_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::testing {

using MetricLabels = std::map<std::string, std::string>;

struct MetricSample {
  std::string family;  // the family's name (prometheus_client drops a counter's "_total")
  std::string type;    // "counter", "gauge", "histogram", ...
  std::string name;    // as the parser names it, e.g. kiln_request_duration_seconds_count
  MetricLabels labels;
  double value = 0;
};

// Ownership: a value. Thread-safety: const methods from any thread.
class ParsedMetrics {
 public:
  // Parses `text` (the exposition format) with prometheus_client's parser; std::runtime_error,
  // with the parser's message, when it does not parse.
  static ParsedMetrics Parse(const std::string& text);

  // The value of the one sample named `name` whose labels include `labels`: nullopt when there is
  // none; std::runtime_error when several match. A counter's sample matches by the name in the
  // text, though prometheus_client reports it as <family>_total.
  std::optional<double> Value(const std::string& name, const MetricLabels& labels = {}) const;
  // The sum over every sample named `name` whose labels include `labels` (0 when none).
  double Sum(const std::string& name, const MetricLabels& labels = {}) const;
  // Every sample named `name` whose labels include `labels`.
  std::vector<MetricSample> Matching(const std::string& name, const MetricLabels& labels = {}) const;

  const std::vector<MetricSample>& samples() const { return samples_; }

 private:
  std::vector<MetricSample> samples_;
};

// GET http://127.0.0.1:<port><path>: the body (and its Content-Type in *content_type); an error
// naming the port when it does not answer 200 within `timeout_ms`.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path, int timeout_ms = 5000,
                                    std::string* content_type = nullptr);

}  // namespace kiln::testing

#endif  // KILN_TESTS_METRICS_TEXT_H_
