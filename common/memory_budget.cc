#include "common/memory_budget.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>

#include "absl/strings/str_format.h"
#include "common/model_config_loader.h"
#include "glog/logging.h"

namespace kiln {
namespace {

constexpr int64_t kMaxBytes = std::numeric_limits<int64_t>::max();

// `value` rounded down into [0, INT64_MAX].
int64_t ClampToBytes(long double value) {
  if (!(value > 0)) return 0;  // also NaN
  if (value >= static_cast<long double>(kMaxBytes)) return kMaxBytes;
  return static_cast<int64_t>(value);
}

double ShareOrDefault(double share) { return share > 0 ? share : kDefaultCgroupShare; }

}  // namespace

int64_t WorkerBudgetBytes(const MemoryConfig& config, int64_t limit_bytes, int total_workers) {
  long double budget = 0;
  if (config.limit_bytes() > 0) {
    budget = config.limit_bytes();
  } else {
    const int workers = std::max(total_workers, 1);
    budget = static_cast<long double>(ShareOrDefault(config.cgroup_share())) *
             static_cast<long double>(std::max<int64_t>(limit_bytes, 0)) / workers;
  }
  return ClampToBytes(std::floor(budget) - static_cast<long double>(config.headroom_bytes()));
}

int64_t ShapeUnits(int64_t batch, int64_t sequence_length) {
  return std::max<int64_t>(batch, 1) * std::max<int64_t>(sequence_length, 1);
}

void ShapeMemoryModel::Add(int64_t units, int64_t peak_bytes) {
  if (units <= 0) {
    LOG(WARNING) << "memory model: ignoring a peak of " << peak_bytes << " bytes for " << units
                 << " units (sizes are > 0)";
    return;
  }
  auto [it, inserted] = peaks_.emplace(units, peak_bytes);
  if (!inserted) it->second = std::max(it->second, peak_bytes);
}

double ShapeMemoryModel::Slope() const {
  if (peaks_.empty()) return 0;
  double steepest = 0;
  if (peaks_.size() == 1) {
    const auto& [units, peak] = *peaks_.begin();
    steepest = (static_cast<double>(peak) - static_cast<double>(baseline_bytes_)) /
               static_cast<double>(units);
  } else {
    for (auto next = std::next(peaks_.begin()), prev = peaks_.begin(); next != peaks_.end();
         ++prev, ++next) {
      const double slope = (static_cast<double>(next->second) - static_cast<double>(prev->second)) /
                           static_cast<double>(next->first - prev->first);
      steepest = std::max(steepest, slope);
    }
  }
  return std::max(steepest, 0.0);
}

int64_t ShapeMemoryModel::EnvelopeAtLargest() const {
  int64_t envelope = baseline_bytes_;
  for (const auto& [units, peak] : peaks_) envelope = std::max(envelope, peak);
  return envelope;
}

int64_t ShapeMemoryModel::Projected(int64_t units) const {
  if (peaks_.empty() || units <= 0) return baseline_bytes_;
  int64_t envelope = baseline_bytes_;
  for (const auto& [measured_units, peak] : peaks_) {
    envelope = std::max(envelope, peak);
    if (units <= measured_units) return envelope;
  }
  // Above the largest measured size; `envelope` is E there.
  const int64_t largest = peaks_.rbegin()->first;
  const long double extra =
      std::ceil(static_cast<long double>(Slope()) * static_cast<long double>(units - largest));
  return ClampToBytes(static_cast<long double>(envelope) + extra);
}

int64_t ShapeMemoryModel::MaxUnitsWithin(int64_t budget_bytes) const {
  // A projection of INT64_MAX is saturated ("that or more") and never fits.
  budget_bytes = std::min(budget_bytes, kMaxBytes - 1);
  if (peaks_.empty()) return baseline_bytes_ <= budget_bytes ? kUnbounded : 0;
  const int64_t largest = peaks_.rbegin()->first;
  const int64_t at_largest = EnvelopeAtLargest();
  if (at_largest <= budget_bytes) {
    const double slope = Slope();
    if (slope <= 0) return kUnbounded;
    // Solve E(u_n) + slope x (u - u_n) <= budget, then settle the rounding against Projected.
    const long double extra = std::floor(static_cast<long double>(budget_bytes - at_largest) /
                                         static_cast<long double>(slope));
    int64_t units = ClampToBytes(static_cast<long double>(largest) + extra);
    // Floating point is off by a unit at most; the upward steps are bounded all the same.
    while (units > largest && Projected(units) > budget_bytes) --units;
    for (int step = 0; step < 4 && units < kUnbounded && Projected(units + 1) <= budget_bytes;
         ++step) {
      ++units;
    }
    return units;
  }
  // Within the measured sizes, the projection is E at the next measured size up: the answer is the
  // largest measured size whose E fits.
  int64_t fitting = 0;
  int64_t envelope = baseline_bytes_;
  for (const auto& [units, peak] : peaks_) {
    envelope = std::max(envelope, peak);
    if (envelope > budget_bytes) break;
    fitting = units;
  }
  return fitting;
}

absl::Status CheckRoomForWorkers(const WorkerAdmission& admission, int64_t limit_bytes) {
  const long double needed =
      static_cast<long double>(admission.usage_bytes) + admission.pending_bytes +
      static_cast<long double>(admission.count) * admission.per_worker_bytes +
      admission.headroom_bytes;
  if (needed <= limit_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrFormat(
      "%.1f MB in use (%s) + %.1f MB reserved for %d worker(s) still warming + %d x %.1f MB (%s) "
      "+ %.1f MB headroom = %.1f MB, over the %.1f MB limit",
      admission.usage_bytes / 1e6, admission.usage_source, admission.pending_bytes / 1e6,
      admission.pending_workers, admission.count, admission.per_worker_bytes / 1e6,
      admission.measured ? "the private peak a warm worker of the model measured"
                         : "its memory budget: no worker of the model measured yet",
      admission.headroom_bytes / 1e6, static_cast<double>(needed / 1e6), limit_bytes / 1e6));
}

}  // namespace kiln
