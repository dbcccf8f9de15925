// The events of one scenario run and when they happened (`kiln-bench lb`'s "scale_started",
// "switched", ...; reload's "trigger"), in milliseconds since the run's load began: the clock the
// load's RequestRecord times count from, so that phases between events (bench/phases.h) hold the
// requests scheduled between them.
#ifndef KILN_BENCH_TIMED_EVENTS_H_
#define KILN_BENCH_TIMED_EVENTS_H_

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "bench/report.h"

namespace kiln::bench {

// Event name -> ms since the start.
//
// Ownership: a plain value, owned by the scenario's run (and then its result). Thread-compatible:
// one thread at a time marks events (the run's main thread).
class TimedEvents {
 public:
  using Clock = std::chrono::steady_clock;

  // `names`: the events a run may have, in the order its report lists them. `start`: what their
  // times count from, the load's start (BackgroundLoad::start()).
  explicit TimedEvents(std::vector<std::string> names = {}, Clock::time_point start = Clock::now());

  Clock::time_point start() const { return start_; }
  // Milliseconds from the start to `when`, or to now.
  double Since(Clock::time_point when) const;
  double Now() const { return Since(Clock::now()); }

  // `name` happened now, or at `when`, or `ms` after the start; a later mark replaces an earlier
  // one. Mark returns the event's time (ms since the start).
  double Mark(absl::string_view name) { return Mark(name, Clock::now()); }
  double Mark(absl::string_view name, Clock::time_point when);
  void Set(absl::string_view name, double ms);

  // When `name` happened; std::nullopt when it did not.
  std::optional<double> Ms(absl::string_view name) const;
  // Ms(name), or `otherwise` when it did not happen.
  double MsOr(absl::string_view name, double otherwise) const;

  // For each of the names (then any other event that happened), `key`.NAME: its time in ms (JSON)
  // and in seconds ("3.00 s", text); JSON null and "-" when it did not happen.
  void AddTo(Report& report, absl::string_view key) const;

 private:
  std::vector<std::string> names_;
  Clock::time_point start_;
  std::map<std::string, double, std::less<>> ms_;
};

}  // namespace kiln::bench

#endif  // KILN_BENCH_TIMED_EVENTS_H_
