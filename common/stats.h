// Order statistics shared by the warmup report, the readiness check and kiln-bench.
#ifndef KILN_COMMON_STATS_H_
#define KILN_COMMON_STATS_H_

#include <algorithm>
#include <cmath>
#include <vector>

namespace kiln {

// The nearest-rank percentile (p in [0, 100]) of `sorted` (ascending, non-empty): the smallest
// sample such that at least p % of the samples are <= it.
inline double NearestRankPercentile(const std::vector<double>& sorted, double p) {
  const double rank = std::ceil(std::clamp(p, 0.0, 100.0) / 100.0 * sorted.size());
  const size_t index = rank <= 1 ? 0 : static_cast<size_t>(rank) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

// The median of `values` (any order; the mean of the middle two for an even count); 0 if empty.
inline double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

}  // namespace kiln

#endif  // KILN_COMMON_STATS_H_
