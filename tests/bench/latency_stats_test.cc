#include "bench/latency_stats.h"

#include <catch2/catch.hpp>
#include <vector>

namespace kiln::bench {
namespace {

TEST_CASE("nearest-rank percentiles", "[stats]") {
  std::vector<double> sorted;
  for (int i = 1; i <= 100; ++i) sorted.push_back(i);
  CHECK(Percentile(sorted, 50) == 50);
  CHECK(Percentile(sorted, 99) == 99);
  CHECK(Percentile(sorted, 99.5) == 100);
  CHECK(Percentile(sorted, 100) == 100);
  CHECK(Percentile(sorted, 0) == 1);
  CHECK(Percentile({7.0}, 95) == 7.0);
  CHECK(Percentile({1.0, 2.0, 3.0, 4.0}, 50) == 2.0);
  CHECK(Percentile({1.0, 2.0, 3.0, 4.0}, 51) == 3.0);
}

TEST_CASE("a summary sorts its samples and reports every percentile", "[stats]") {
  const LatencySummary s = Summarize({5, 1, 4, 2, 3, 100, 6, 7, 8, 9});
  CHECK(s.count == 10);
  CHECK(s.min == 1);
  CHECK(s.max == 100);
  CHECK(s.mean == Approx(14.5));
  CHECK(s.p50 == 5);
  CHECK(s.p90 == 9);
  CHECK(s.p95 == 100);
  CHECK(s.p99 == 100);
  CHECK(Summarize({}).count == 0);
}

TEST_CASE("median and spread of repeated runs", "[stats]") {
  const Spread odd = MedianAndSpread({3, 1, 2});
  CHECK(odd.median == 2);
  CHECK(odd.min == 1);
  CHECK(odd.max == 3);
  CHECK(MedianAndSpread({4, 1, 3, 2}).median == 2.5);
  CHECK(MedianAndSpread({}).count == 0);
}

}  // namespace
}  // namespace kiln::bench
