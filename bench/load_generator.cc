#include "bench/load_generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/oip_client.h"

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Above this many arrivals a schedule is refused (80 MB of offsets, more in records).
constexpr double kMaxScheduledRequests = 1e7;

// The state one run shares between its sending thread, the sender's completion threads and the
// progress thread. Owned jointly (shared_ptr) by RunLoad and every pending completion, so that
// a completion arriving after RunLoad returned touches live memory and is ignored (`closed`).
struct LoopState {
  explicit LoopState(Clock::time_point start_time) : start(start_time) {}

  double NowMs() const {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  }

  const Clock::time_point start;
  std::mutex mu;
  std::condition_variable changed;        // a completion arrived
  std::condition_variable progress_stop;  // stop_progress turned true
  std::deque<RequestRecord> records;      // GUARDED_BY(mu); a deque: indices stay valid
  int64_t outstanding = 0;                // GUARDED_BY(mu)
  int64_t sent = 0;                       // GUARDED_BY(mu)
  int64_t completed = 0;                  // GUARDED_BY(mu)
  int64_t errors = 0;                     // GUARDED_BY(mu)
  std::vector<double> recent_ok_ms;       // GUARDED_BY(mu); since the last progress line
  bool closed = false;                    // GUARDED_BY(mu); late completions are ignored
  bool stop_progress = false;             // GUARDED_BY(mu)
};

// The completion of request `index`: records its status once; later calls and calls after the
// run closed do nothing.
DoneFn MakeDone(std::shared_ptr<LoopState> state, size_t index) {
  return [state = std::move(state), index](grpc::Status status) {
    const double now = state->NowMs();
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->closed) return;
    RequestRecord& record = state->records[index];
    if (record.code != kNoResponse) return;  // called twice: the first status stands
    record.done_ms = now;
    record.code = static_cast<int>(status.error_code());
    --state->outstanding;
    ++state->completed;
    if (record.ok()) {
      state->recent_ok_ms.push_back(record.latency_ms());
    } else {
      ++state->errors;
    }
    state->changed.notify_all();
  };
}

// Appends a record for a request about to be sent (or dropped) and returns its index.
size_t AddRecord(LoopState& state, double scheduled_ms, double sent_ms) {
  RequestRecord record;
  record.scheduled_ms = scheduled_ms;
  record.sent_ms = sent_ms;
  state.records.push_back(record);
  return state.records.size() - 1;
}

// Warmup: `count` requests one at a time, each awaited up to `wait`. Not recorded.
void Warmup(int64_t count, std::chrono::milliseconds wait, const SendFn& send, LoadResult* result) {
  struct One {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<grpc::Status> status;
  };
  for (int64_t i = 0; i < count; ++i) {
    auto one = std::make_shared<One>();
    send([one](grpc::Status status) {
      std::lock_guard<std::mutex> lock(one->mu);
      if (!one->status) one->status = std::move(status);
      one->cv.notify_all();
    });
    std::unique_lock<std::mutex> lock(one->mu);
    one->cv.wait_for(lock, wait, [&] { return one->status.has_value(); });
    std::string error;
    if (!one->status) {
      error = "NO_RESPONSE: no completion within the timeout";
    } else if (!one->status->ok()) {
      error = FormatGrpcStatus(*one->status);
    }
    if (!error.empty()) {
      if (result->warmup_failures++ == 0) result->first_warmup_error = error;
    }
  }
}

// The progress thread's body: a Progress every interval until stop_progress.
void ProgressLoop(LoopState& state, double interval_s,
                  const std::function<void(const Progress&)>& report) {
  const auto interval =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(interval_s));
  Clock::time_point next = state.start + interval;
  std::unique_lock<std::mutex> lock(state.mu);
  while (!state.progress_stop.wait_until(lock, next, [&] { return state.stop_progress; })) {
    Progress progress;
    progress.elapsed_s = std::chrono::duration<double>(Clock::now() - state.start).count();
    progress.sent = state.sent;
    progress.completed = state.completed;
    progress.errors = state.errors;
    std::vector<double> recent;
    recent.swap(state.recent_ok_ms);
    lock.unlock();
    progress.p50_ms = Summarize(std::move(recent)).p50;
    report(progress);
    lock.lock();
    next += interval;
  }
}

}  // namespace

const char* ArrivalName(Arrival arrival) {
  return arrival == Arrival::kConstant ? "constant" : "poisson";
}

std::optional<Arrival> ParseArrival(absl::string_view name) {
  if (name == "constant") return Arrival::kConstant;
  if (name == "poisson") return Arrival::kPoisson;
  return std::nullopt;
}

const char* LoopModeName(LoopMode mode) { return mode == LoopMode::kOpen ? "open" : "closed"; }

std::vector<double> ArrivalOffsetsMs(Arrival arrival, double rate, ScheduleBound bound,
                                     uint64_t seed) {
  std::vector<double> offsets;
  if (!(rate > 0)) return offsets;
  const double gap_ms = 1000.0 / rate;
  const bool by_count = bound.requests > 0;
  const double end_ms = bound.duration_s * 1000.0;
  if (!by_count && !(end_ms > 0)) return offsets;
  const double expected = by_count ? static_cast<double>(bound.requests) : end_ms / gap_ms;
  offsets.reserve(static_cast<size_t>(std::min(expected * 1.1 + 16, kMaxScheduledRequests)));
  std::mt19937_64 random(seed);
  double t = 0;
  for (int64_t i = 0;; ++i) {
    if (arrival == Arrival::kConstant) {
      t = static_cast<double>(i) * gap_ms;  // not a running sum: no drift
    } else if (i > 0) {
      // Inverse transform of a uniform in [0, 1) with 53 random bits: -ln(1 - u) * mean.
      const double u = static_cast<double>(random() >> 11) * 0x1.0p-53;
      t += -std::log1p(-u) * gap_ms;
    }
    if (by_count ? i >= bound.requests : t >= end_ms) break;
    if (static_cast<double>(offsets.size()) >= kMaxScheduledRequests) break;
    offsets.push_back(t);
  }
  return offsets;
}

std::string OutcomeName(int code) {
  if (code == kDroppedClientCap) return "DROPPED_CLIENT_CAP";
  if (code == kNoResponse) return "NO_RESPONSE";
  return GrpcCodeName(static_cast<grpc::StatusCode>(code));
}

std::string FormatProgress(const Progress& p, double interval_s) {
  std::string line = absl::StrFormat("[%6.1f s] sent %d, completed %d, errors %d", p.elapsed_s,
                                     p.sent, p.completed, p.errors);
  if (p.p50_ms > 0) {
    absl::StrAppend(&line, absl::StrFormat(", p50 %.2f ms (last %g s)", p.p50_ms, interval_s));
  } else {
    absl::StrAppend(&line,
                    absl::StrFormat(", p50 - (no OK completion in the last %g s)", interval_s));
  }
  return line;
}

absl::Status ValidateLoadOptions(const LoadOptions& o) {
  if (o.mode == LoopMode::kOpen && !(o.rate > 0 && std::isfinite(o.rate))) {
    return absl::InvalidArgumentError("open loop: rate must be > 0");
  }
  if (o.concurrency < 1) return absl::InvalidArgumentError("concurrency must be >= 1");
  if ((o.requests > 0) == (o.duration_s > 0)) {
    return absl::InvalidArgumentError("exactly one of requests (> 0) and duration_s (> 0)");
  }
  if (o.requests < 0 || o.duration_s < 0 || !std::isfinite(o.duration_s)) {
    return absl::InvalidArgumentError("requests and duration_s must not be negative");
  }
  if (o.warmup_requests < 0) return absl::InvalidArgumentError("warmup_requests must be >= 0");
  if (o.timeout_ms < 1) return absl::InvalidArgumentError("timeout_ms must be >= 1");
  if (o.drain_grace_ms < 0) return absl::InvalidArgumentError("drain_grace_ms must be >= 0");
  if (o.progress && !(o.progress_interval_s > 0)) {
    return absl::InvalidArgumentError("progress_interval_s must be > 0");
  }
  const double scheduled = o.requests > 0 ? static_cast<double>(o.requests)
                                          : (o.mode == LoopMode::kOpen ? o.rate * o.duration_s : 0);
  if (scheduled > kMaxScheduledRequests) {
    return absl::InvalidArgumentError(
        absl::StrFormat("at most %.0f requests per run (this one schedules %.0f)",
                        kMaxScheduledRequests, scheduled));
  }
  return absl::OkStatus();
}

LoadResult RunLoad(const LoadOptions& options, const SendFn& send) {
  LoadResult result;
  const std::chrono::milliseconds wait(options.timeout_ms + options.drain_grace_ms);
  Warmup(options.warmup_requests, wait, send, &result);

  const bool open = options.mode == LoopMode::kOpen;
  std::vector<double> offsets;
  if (open) {
    offsets = ArrivalOffsetsMs(options.arrival, options.rate,
                               {options.requests, options.duration_s}, options.seed);
    result.schedule_span_ms = options.requests > 0
                                  ? static_cast<double>(options.requests) * 1000.0 / options.rate
                                  : options.duration_s * 1000.0;
  }
  // The run's length when known in advance (closed loop bounded by requests: unknown).
  std::optional<double> known_run_s;
  if (open) {
    known_run_s = result.schedule_span_ms / 1000.0;
  } else if (options.requests == 0) {
    known_run_s = options.duration_s;
  }

  auto state = std::make_shared<LoopState>(Clock::now());
  std::thread progress_thread;
  if (options.progress && !(known_run_s && *known_run_s <= options.progress_min_run_s)) {
    progress_thread = std::thread(ProgressLoop, std::ref(*state), options.progress_interval_s,
                                  std::cref(options.progress));
  }

  double last_send_ms = 0;
  if (open) {
    for (const double offset : offsets) {
      if (options.stop != nullptr && options.stop->load()) {
        result.schedule_span_ms = offset;
        break;
      }
      std::this_thread::sleep_until(state->start +
                                    std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double, std::milli>(offset)));
      size_t index;
      {
        std::lock_guard<std::mutex> lock(state->mu);
        const double now = state->NowMs();
        index = AddRecord(*state, offset, now);
        if (state->outstanding >= options.concurrency) {
          state->records[index].code = kDroppedClientCap;
          ++state->errors;
          continue;
        }
        ++state->outstanding;
        ++state->sent;
        last_send_ms = now;
      }
      send(MakeDone(state, index));
    }
  } else {
    const auto end = state->start + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(options.duration_s));
    for (int64_t issued = 0; options.requests == 0 || issued < options.requests; ++issued) {
      size_t index;
      {
        std::unique_lock<std::mutex> lock(state->mu);
        auto slot_free = [&] { return state->outstanding < options.concurrency; };
        if (options.requests > 0) {
          // A slot stays busy at most until its request's deadline (plus grace); a sender that
          // never completes ends the run instead of hanging it (the drain records NO_RESPONSE).
          if (!state->changed.wait_for(lock, wait, slot_free)) break;
        } else if (!state->changed.wait_until(lock, end, slot_free) || Clock::now() >= end) {
          break;
        }
        const double now = state->NowMs();
        index = AddRecord(*state, now, now);
        ++state->outstanding;
        ++state->sent;
        last_send_ms = now;
      }
      send(MakeDone(state, index));
    }
  }

  // Drain: wait for the outstanding requests up to the last one's deadline (plus grace).
  {
    const auto drain_end = state->start +
                           std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double, std::milli>(last_send_ms)) +
                           wait;
    std::unique_lock<std::mutex> lock(state->mu);
    state->changed.wait_until(lock, drain_end, [&] { return state->outstanding == 0; });
    state->closed = true;
    state->stop_progress = true;
    state->progress_stop.notify_all();
    result.records.assign(state->records.begin(), state->records.end());
  }
  if (progress_thread.joinable()) progress_thread.join();
  return result;
}

RunStats::RunStats(RunInfo info, std::vector<RequestRecord> records, double schedule_span_ms)
    : info_(std::move(info)), records_(std::move(records)), schedule_span_ms_(schedule_span_ms) {}

int64_t RunStats::sent() const {
  return std::count_if(records_.begin(), records_.end(),
                       [](const RequestRecord& r) { return r.code != kDroppedClientCap; });
}

int64_t RunStats::completed() const {
  return std::count_if(records_.begin(), records_.end(),
                       [](const RequestRecord& r) { return r.completed(); });
}

int64_t RunStats::ok() const {
  return std::count_if(records_.begin(), records_.end(),
                       [](const RequestRecord& r) { return r.ok(); });
}

std::map<std::string, int64_t> RunStats::errors() const {
  std::map<std::string, int64_t> errors;
  for (const RequestRecord& r : records_) {
    if (!r.ok()) ++errors[OutcomeName(r.code)];
  }
  return errors;
}

LatencySummary RunStats::latency() const {
  std::vector<double> samples;
  samples.reserve(records_.size());
  for (const RequestRecord& r : records_) {
    if (r.ok()) samples.push_back(r.latency_ms());
  }
  return Summarize(std::move(samples));
}

double RunStats::window_s() const {
  double end_ms = schedule_span_ms_;
  for (const RequestRecord& r : records_) {
    end_ms = std::max(end_ms, r.completed() ? r.done_ms : r.sent_ms);
  }
  return end_ms / 1000.0;
}

double RunStats::achieved_rate() const {
  double end_ms = schedule_span_ms_;
  if (info_.mode == LoopMode::kClosed) {
    end_ms = window_s() * 1000.0;
  } else {
    for (const RequestRecord& r : records_) {
      if (r.code != kDroppedClientCap) end_ms = std::max(end_ms, r.sent_ms);
    }
  }
  return end_ms > 0 ? static_cast<double>(sent()) * 1000.0 / end_ms : 0;
}

double RunStats::throughput() const {
  const double window = window_s();
  return window > 0 ? static_cast<double>(ok()) / window : 0;
}

std::string RunStats::ErrorsLine() const {
  const std::map<std::string, int64_t> by_name = errors();
  if (by_name.empty()) return "errors: none";
  std::vector<std::pair<std::string, int64_t>> sorted(by_name.begin(), by_name.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string line = "errors:";
  for (size_t i = 0; i < sorted.size(); ++i) {
    absl::StrAppend(&line, i == 0 ? " " : ", ", sorted[i].first, " ", sorted[i].second);
  }
  return line;
}

std::string RunStats::Report() const {
  const bool open = info_.mode == LoopMode::kOpen;
  std::string out;
  if (open) {
    absl::StrAppend(
        &out, absl::StrFormat("load: %s, open loop, %s arrivals, outstanding cap %d\n", info_.model,
                              ArrivalName(info_.arrival), info_.concurrency));
  } else {
    absl::StrAppend(&out, absl::StrFormat("load: %s, closed loop, concurrency %d\n", info_.model,
                                          info_.concurrency));
  }
  absl::StrAppend(&out, absl::StrFormat("requests: scheduled %d, sent %d, completed %d, ok %d\n",
                                        scheduled(), sent(), completed(), ok()));
  if (open) {
    absl::StrAppend(&out, absl::StrFormat("rate: target %.1f rps, achieved %.1f rps\n",
                                          info_.target_rate, achieved_rate()));
  } else {
    absl::StrAppend(&out, absl::StrFormat("rate: target - (closed loop), achieved %.1f rps\n",
                                          achieved_rate()));
  }
  absl::StrAppend(&out,
                  absl::StrFormat("throughput: %.1f ok/s over %.2f s\n", throughput(), window_s()));
  const LatencySummary summary = latency();
  absl::StrAppend(&out, "latency (", open ? "scheduled" : "sent",
                  " -> done, OK only): ", FormatSummary(summary),
                  absl::StrFormat(", mean %.2f ms\n", summary.mean));
  absl::StrAppend(&out, ErrorsLine(), "\n");
  return out;
}

nlohmann::ordered_json RunStats::ToJson() const {
  const bool open = info_.mode == LoopMode::kOpen;
  const LatencySummary s = latency();
  nlohmann::ordered_json errors = nlohmann::ordered_json::object();
  for (const auto& [name, count] : this->errors()) errors[name] = count;
  return nlohmann::ordered_json{
      {"model", info_.model},
      {"mode", LoopModeName(info_.mode)},
      {"arrival", open ? ArrivalName(info_.arrival) : "none"},
      {"target_rate", open ? info_.target_rate : 0.0},
      {"concurrency", info_.concurrency},
      {"duration_s", RoundToThousandths(window_s())},
      {"sent", sent()},
      {"completed", completed()},
      {"ok", ok()},
      {"throughput_rps", RoundToThousandths(throughput())},
      {"latency_ms",
       {{"count", s.count},
        {"min", RoundToThousandths(s.min)},
        {"mean", RoundToThousandths(s.mean)},
        {"p50", RoundToThousandths(s.p50)},
        {"p90", RoundToThousandths(s.p90)},
        {"p95", RoundToThousandths(s.p95)},
        {"p99", RoundToThousandths(s.p99)},
        {"max", RoundToThousandths(s.max)}}},
      {"errors", errors},
  };
}

void RunStats::WriteCsv(std::ostream& out) const {
  out << "scheduled_ms,sent_ms,latency_ms,code\n";
  for (const RequestRecord& r : records_) {
    out << absl::StrFormat("%.3f,%.3f,", r.scheduled_ms, r.sent_ms);
    if (r.completed()) out << absl::StrFormat("%.3f", r.latency_ms());
    out << "," << OutcomeName(r.code) << "\n";
  }
}

}  // namespace kiln::bench
