#include "bench/latency_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_format.h"
#include "common/stats.h"

namespace kiln::bench {

double Percentile(const std::vector<double>& sorted, double p) {
  return NearestRankPercentile(sorted, p);
}

LatencySummary Summarize(std::vector<double> samples) {
  LatencySummary summary;
  if (samples.empty()) return summary;
  std::sort(samples.begin(), samples.end());
  summary.count = samples.size();
  summary.min = samples.front();
  summary.max = samples.back();
  summary.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / samples.size();
  summary.p50 = Percentile(samples, 50);
  summary.p90 = Percentile(samples, 90);
  summary.p95 = Percentile(samples, 95);
  summary.p99 = Percentile(samples, 99);
  return summary;
}

Spread MedianAndSpread(std::vector<double> values) {
  Spread spread;
  if (values.empty()) return spread;
  std::sort(values.begin(), values.end());
  spread.count = values.size();
  spread.min = values.front();
  spread.max = values.back();
  spread.median = Median(values);
  return spread;
}

std::string FormatSummary(const LatencySummary& s) {
  return absl::StrFormat("n %d, p50 %.2f ms, p90 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms",
                         s.count, s.p50, s.p90, s.p95, s.p99, s.max);
}

double RoundToThousandths(double value) { return std::round(value * 1000) / 1000; }

}  // namespace kiln::bench
