#include "bench/timed_events.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kiln::bench {

TimedEvents::TimedEvents(std::vector<std::string> names, Clock::time_point start)
    : names_(std::move(names)), start_(start) {}

double TimedEvents::Since(Clock::time_point when) const {
  return std::chrono::duration<double, std::milli>(when - start_).count();
}

double TimedEvents::Mark(absl::string_view name, Clock::time_point when) {
  const double ms = Since(when);
  Set(name, ms);
  return ms;
}

void TimedEvents::Set(absl::string_view name, double ms) { ms_[std::string(name)] = ms; }

std::optional<double> TimedEvents::Ms(absl::string_view name) const {
  const auto found = ms_.find(name);
  if (found == ms_.end()) return std::nullopt;
  return found->second;
}

double TimedEvents::MsOr(absl::string_view name, double otherwise) const {
  return Ms(name).value_or(otherwise);
}

void TimedEvents::AddTo(Report& report, absl::string_view key) const {
  std::vector<std::string> names = names_;
  for (const auto& [name, ms] : ms_) {
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  for (const std::string& name : names) {
    const std::optional<double> ms = Ms(name);
    report.Set(absl::StrCat(key, ".", name), ms ? ScaledNumber(*ms, 0.001, "%.2f s") : Null("-"));
  }
}

}  // namespace kiln::bench
