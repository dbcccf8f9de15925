// Latency samples and their summary, for kiln-bench's load and coldstart sub-commands.
#ifndef KILN_BENCH_LATENCY_STATS_H_
#define KILN_BENCH_LATENCY_STATS_H_

#include <cstddef>
#include <string>
#include <vector>

namespace kiln::bench {

// Percentiles of a set of samples (milliseconds). A plain value.
struct LatencySummary {
  size_t count = 0;
  double min = 0, mean = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0, max = 0;
};

// The nearest-rank percentile (p in [0, 100]) of `sorted` (ascending, non-empty): the smallest
// sample such that at least p % of the samples are <= it.
double Percentile(const std::vector<double>& sorted, double p);

// Summary of `samples` (any order); all zeros for an empty set.
LatencySummary Summarize(std::vector<double> samples);

// Median and spread of repeated measurements (e.g. one per coldstart run).
struct Spread {
  size_t count = 0;
  double median = 0, min = 0, max = 0;
};
Spread MedianAndSpread(std::vector<double> values);

// `value` rounded to 3 decimals: milliseconds to the microsecond, as the --json files write them.
double RoundToThousandths(double value);

// "p50 12.3 ms, p90 ..., max ..." for progress and report lines.
std::string FormatSummary(const LatencySummary& summary);

}  // namespace kiln::bench

#endif  // KILN_BENCH_LATENCY_STATS_H_
