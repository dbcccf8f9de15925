// Tests of kiln-bench load's pure logic (bench/load_generator.h): schedules, the open and closed
// loops driven by fake senders (no server), the accounting and its JSON/CSV output, and the
// command's flag validation. The fakes simulate work with delays on threads of their own; no
// test waits a fixed time for something to happen.
#include "bench/load_generator.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/args.h"
#include "bench/load_command.h"

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Completes every request `delay` after it was sent, in order, on a thread of its own, with the
// status `status_of(n)` for the n-th request (0-based). Tracks the requests in flight (sent, not
// yet completed) and their maximum. Thread-safe. The destructor completes what is left at once.
class DelayedSender {
 public:
  explicit DelayedSender(milliseconds delay,
                         std::function<grpc::Status(int64_t)> status_of = nullptr)
      : delay_(delay), status_of_(std::move(status_of)), thread_([this] { Loop(); }) {}
  ~DelayedSender() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  void Send(DoneFn done) {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t n = calls_++;
    ++in_flight_;
    max_in_flight_ = std::max(max_in_flight_, in_flight_);
    queue_.push_back(
        {Clock::now() + delay_, status_of_ ? status_of_(n) : grpc::Status::OK, std::move(done)});
    cv_.notify_all();
  }
  SendFn AsSendFn() {
    return [this](DoneFn done) { Send(std::move(done)); };
  }
  int64_t calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  int64_t max_in_flight() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_in_flight_;
  }

 private:
  struct Pending {
    Clock::time_point due;
    grpc::Status status;
    DoneFn done;
  };

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      if (queue_.empty()) {
        if (stop_) return;
        cv_.wait(lock);
        continue;
      }
      if (!stop_ && Clock::now() < queue_.front().due) {
        cv_.wait_until(lock, queue_.front().due);
        continue;
      }
      Pending pending = std::move(queue_.front());
      queue_.pop_front();
      --in_flight_;  // before `done`: the loop may reuse the slot as soon as it hears of it
      lock.unlock();
      pending.done(pending.status);
      lock.lock();
    }
  }

  const milliseconds delay_;
  const std::function<grpc::Status(int64_t)> status_of_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  int64_t calls_ = 0;
  int64_t in_flight_ = 0;
  int64_t max_in_flight_ = 0;
  bool stop_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

// Keeps every `done` without calling it, until the test releases them.
class HoldingSender {
 public:
  SendFn AsSendFn() {
    return [this](DoneFn done) {
      std::lock_guard<std::mutex> lock(mu_);
      held_.push_back(std::move(done));
    };
  }
  size_t held() {
    std::lock_guard<std::mutex> lock(mu_);
    return held_.size();
  }
  void ReleaseAll() {
    std::vector<DoneFn> held;
    {
      std::lock_guard<std::mutex> lock(mu_);
      held.swap(held_);
    }
    for (DoneFn& done : held) done(grpc::Status::OK);
  }

 private:
  std::mutex mu_;
  std::vector<DoneFn> held_;
};

double Mean(const std::vector<double>& values) {
  return std::accumulate(values.begin(), values.end(), 0.0) / values.size();
}

std::vector<double> Gaps(const std::vector<double>& offsets) {
  std::vector<double> gaps;
  for (size_t i = 1; i < offsets.size(); ++i) gaps.push_back(offsets[i] - offsets[i - 1]);
  return gaps;
}

LoadOptions Closed(int64_t concurrency, int64_t requests) {
  LoadOptions options;
  options.mode = LoopMode::kClosed;
  options.concurrency = concurrency;
  options.requests = requests;
  options.timeout_ms = 5000;
  return options;
}

LoadOptions Open(double rate, int64_t requests, int64_t cap) {
  LoadOptions options;
  options.mode = LoopMode::kOpen;
  options.arrival = Arrival::kConstant;
  options.rate = rate;
  options.concurrency = cap;
  options.requests = requests;
  options.timeout_ms = 5000;
  return options;
}

RunStats Stats(const LoadOptions& options, LoadResult result) {
  RunInfo info;
  info.model = "fake";
  info.mode = options.mode;
  info.arrival = options.arrival;
  info.target_rate = options.mode == LoopMode::kOpen ? options.rate : 0;
  info.concurrency = options.concurrency;
  return RunStats(info, std::move(result.records), result.schedule_span_ms);
}

// --- schedules ---------------------------------------------------------------------------------

TEST_CASE("a constant schedule is exactly evenly spaced", "[load][schedule]") {
  const std::vector<double> by_count = ArrivalOffsetsMs(Arrival::kConstant, 200, {1000, 0}, 0);
  REQUIRE(by_count.size() == 1000);
  for (size_t i = 0; i < by_count.size(); ++i) CHECK(by_count[i] == 5.0 * i);

  const std::vector<double> by_time = ArrivalOffsetsMs(Arrival::kConstant, 100, {0, 1.0}, 0);
  REQUIRE(by_time.size() == 100);
  CHECK(by_time.front() == 0);
  CHECK(by_time.back() == 990);

  // A gap that is not exact in binary does not drift over many arrivals.
  const std::vector<double> thirds = ArrivalOffsetsMs(Arrival::kConstant, 3, {3001, 0}, 0);
  CHECK(thirds.back() == Approx(1e6).epsilon(1e-12));
}

TEST_CASE("a Poisson schedule is seeded, reproducible and has exponential gaps",
          "[load][schedule]") {
  const double rate = 250;  // mean gap 4 ms
  const std::vector<double> a = ArrivalOffsetsMs(Arrival::kPoisson, rate, {20001, 0}, 42);
  const std::vector<double> b = ArrivalOffsetsMs(Arrival::kPoisson, rate, {20001, 0}, 42);
  const std::vector<double> c = ArrivalOffsetsMs(Arrival::kPoisson, rate, {20001, 0}, 43);
  REQUIRE(a.size() == 20001);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a.front() == 0);
  CHECK(std::is_sorted(a.begin(), a.end()));

  const std::vector<double> gaps = Gaps(a);
  REQUIRE(gaps.size() == 20000);
  const double mean = Mean(gaps);
  CHECK(mean == Approx(1000.0 / rate).epsilon(0.05));
  double square_sum = 0;
  for (const double gap : gaps) square_sum += (gap - mean) * (gap - mean);
  const double cv = std::sqrt(square_sum / (gaps.size() - 1)) / mean;
  CHECK(cv == Approx(1.0).epsilon(0.05));
  // Not a constant schedule in disguise.
  CHECK(*std::min_element(gaps.begin(), gaps.end()) < 0.1 * mean);
  CHECK(*std::max_element(gaps.begin(), gaps.end()) > 5 * mean);

  const std::vector<double> by_time = ArrivalOffsetsMs(Arrival::kPoisson, rate, {0, 10.0}, 7);
  CHECK(by_time.back() < 10000);
  CHECK(static_cast<double>(by_time.size()) == Approx(2500).epsilon(0.1));
}

TEST_CASE("schedule arguments out of range give no arrivals", "[load][schedule]") {
  CHECK(ArrivalOffsetsMs(Arrival::kConstant, 0, {10, 0}, 0).empty());
  CHECK(ArrivalOffsetsMs(Arrival::kPoisson, -1, {10, 0}, 0).empty());
  CHECK(ArrivalOffsetsMs(Arrival::kConstant, 10, {0, 0}, 0).empty());
}

// --- closed loop -------------------------------------------------------------------------------

TEST_CASE("a closed loop never exceeds its concurrency and sends exactly --requests",
          "[load][closed]") {
  DelayedSender sender(milliseconds(2));
  const LoadOptions options = Closed(4, 200);
  const LoadResult result = RunLoad(options, sender.AsSendFn());
  CHECK(sender.calls() == 200);
  CHECK(sender.max_in_flight() == 4);  // reached, never exceeded
  const RunStats stats = Stats(options, result);
  CHECK(stats.scheduled() == 200);
  CHECK(stats.sent() == 200);
  CHECK(stats.ok() == 200);
  CHECK(stats.errors().empty());
  for (const RequestRecord& r : stats.records()) {
    CHECK(r.scheduled_ms == r.sent_ms);  // a closed loop has no schedule: latency from the send
    CHECK(r.latency_ms() >= 2.0);
  }
}

TEST_CASE("a closed loop copes with a sender that completes before Send returns",
          "[load][closed]") {
  int64_t in_flight = 0;
  int64_t max_in_flight = 0;
  int64_t calls = 0;
  const LoadOptions options = Closed(3, 1000);
  const LoadResult result = RunLoad(options, [&](DoneFn done) {
    ++calls;
    max_in_flight = std::max(max_in_flight, ++in_flight);
    --in_flight;
    done(grpc::Status::OK);
  });
  CHECK(calls == 1000);
  CHECK(max_in_flight == 1);
  CHECK(Stats(options, result).ok() == 1000);
}

TEST_CASE("a closed loop bounded by duration stops sending at the end", "[load][closed]") {
  DelayedSender sender(milliseconds(5));
  LoadOptions options = Closed(2, 0);
  options.duration_s = 0.2;
  const LoadResult result = RunLoad(options, sender.AsSendFn());
  const RunStats stats = Stats(options, result);
  CHECK(stats.sent() > 0);
  CHECK(stats.ok() == stats.sent());
  CHECK(sender.max_in_flight() <= 2);
  for (const RequestRecord& r : stats.records()) CHECK(r.sent_ms < 200);
}

// --- open loop ---------------------------------------------------------------------------------

TEST_CASE("an open loop keeps its schedule while responses are slow", "[load][open]") {
  DelayedSender sender(milliseconds(50));
  const LoadOptions options = Open(500, 100, 1000);  // a request every 2 ms, 200 ms in all
  const LoadResult result = RunLoad(options, sender.AsSendFn());
  const RunStats stats = Stats(options, result);
  REQUIRE(stats.scheduled() == 100);
  CHECK(stats.sent() == 100);
  CHECK(stats.ok() == 100);
  // Sent on schedule, not after the previous response: ~25 requests were outstanding at once.
  CHECK(sender.max_in_flight() >= 10);
  std::vector<double> lateness;
  for (size_t i = 0; i < stats.records().size(); ++i) {
    const RequestRecord& r = stats.records()[i];
    CHECK(r.scheduled_ms == 2.0 * i);
    lateness.push_back(r.sent_ms - r.scheduled_ms);
    CHECK(r.latency_ms() >= 50.0);  // from the scheduled time, so at least the server's delay
  }
  CHECK(Summarize(lateness).p50 < 10.0);
  CHECK(stats.achieved_rate() == Approx(500).epsilon(0.2));
}

TEST_CASE("an open loop ends its schedule at the first arrival after stop is set", "[load][open]") {
  std::atomic<bool> stop{false};
  LoadOptions options = Open(1000, 1000, 1000);  // a request every 1 ms, 1 s in all
  options.stop = &stop;
  int64_t calls = 0;
  const LoadResult result = RunLoad(options, [&](DoneFn done) {
    if (++calls == 50) stop = true;  // set from inside the loop: no timing involved
    done(grpc::Status::OK);
  });
  CHECK(calls == 50);
  REQUIRE(result.records.size() == 50);
  CHECK(result.schedule_span_ms == 50.0);  // the first arrival not sent
  for (const RequestRecord& r : result.records) CHECK(r.ok());
}

TEST_CASE("an open loop that falls behind counts latency from the scheduled time", "[load][open]") {
  // Each Send blocks the loop for 5 ms while the schedule asks for one every 1 ms: the client
  // falls further behind with every request. A closed-loop measurement would report ~5 ms; the
  // scheduled-time latency grows to ~400 ms by the last request (no coordinated omission).
  const LoadOptions options = Open(1000, 100, 1000);
  const LoadResult result = RunLoad(options, [](DoneFn done) {
    std::this_thread::sleep_for(milliseconds(5));  // simulated slowness, not synchronisation
    done(grpc::Status::OK);
  });
  const RunStats stats = Stats(options, result);
  REQUIRE(stats.ok() == 100);
  const RequestRecord& last = stats.records().back();
  CHECK(last.scheduled_ms == 99.0);
  CHECK(last.sent_ms - last.scheduled_ms >= 300);  // sent late, at once, not skipped
  CHECK(last.latency_ms() >= last.sent_ms - last.scheduled_ms);
  CHECK(last.done_ms - last.sent_ms < last.latency_ms() / 10);
  CHECK(stats.latency().p50 > 100);
  CHECK(stats.latency().max >= 300);
}

TEST_CASE("an open loop counts requests over the outstanding cap as DROPPED_CLIENT_CAP",
          "[load][open]") {
  HoldingSender sender;
  LoadOptions options = Open(10000, 100, 10);  // every 0.1 ms; nothing completes during the run
  options.timeout_ms = 50;
  options.drain_grace_ms = 0;
  const LoadResult result = RunLoad(options, sender.AsSendFn());
  CHECK(sender.held() == 10);
  const RunStats stats = Stats(options, result);
  CHECK(stats.scheduled() == 100);
  CHECK(stats.sent() == 10);
  CHECK(stats.completed() == 0);
  const std::map<std::string, int64_t> expected = {{"DROPPED_CLIENT_CAP", 90}, {"NO_RESPONSE", 10}};
  CHECK(stats.errors() == expected);
  CHECK(stats.ErrorsLine() == "errors: DROPPED_CLIENT_CAP 90, NO_RESPONSE 10");
  // Completions after the run (past the drain) are ignored safely.
  sender.ReleaseAll();
  CHECK(result.records.size() == 100);
}

TEST_CASE("an open loop with a cap drops only while the cap is full", "[load][open]") {
  DelayedSender sender(milliseconds(20));
  const LoadOptions options = Open(2000, 200, 5);  // ~40 would be outstanding without a cap
  const RunStats stats = Stats(options, RunLoad(options, sender.AsSendFn()));
  CHECK(sender.max_in_flight() <= 5);
  const int64_t dropped = stats.scheduled() - stats.sent();
  CHECK(dropped > 0);
  CHECK(stats.sent() == sender.calls());
  CHECK(stats.ok() == stats.sent());
  CHECK(stats.errors().size() == 1);
  CHECK(stats.errors().at("DROPPED_CLIENT_CAP") == dropped);
}

// --- warmup, progress, options -----------------------------------------------------------------

TEST_CASE("warmup requests come first and are not counted", "[load]") {
  DelayedSender sender(milliseconds(1), [](int64_t n) {
    return n == 1 ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "warming") : grpc::Status::OK;
  });
  LoadOptions options = Closed(2, 10);
  options.warmup_requests = 5;
  const LoadResult result = RunLoad(options, sender.AsSendFn());
  CHECK(sender.calls() == 15);
  CHECK(result.records.size() == 10);
  CHECK(result.warmup_failures == 1);
  CHECK(result.first_warmup_error == "UNAVAILABLE: warming");
  CHECK(Stats(options, result).ok() == 10);
}

TEST_CASE("progress is reported while a long run lasts, not for a short one", "[load]") {
  std::mutex mu;
  std::vector<Progress> seen;
  DelayedSender sender(milliseconds(2));
  LoadOptions options = Closed(2, 0);
  options.duration_s = 0.5;
  options.progress_interval_s = 0.1;
  options.progress_min_run_s = 0.3;
  options.progress = [&](const Progress& p) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(p);
  };
  RunLoad(options, sender.AsSendFn());
  {
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(!seen.empty());
    CHECK(seen.front().elapsed_s >= 0.1);
    for (size_t i = 1; i < seen.size(); ++i) CHECK(seen[i].completed >= seen[i - 1].completed);
    CHECK(seen.back().sent > 0);
    seen.clear();
  }
  options.duration_s = 0.25;  // known to be shorter than progress_min_run_s
  RunLoad(options, sender.AsSendFn());
  std::lock_guard<std::mutex> lock(mu);
  CHECK(seen.empty());

  Progress p;
  p.elapsed_s = 4;
  p.sent = 800;
  p.completed = 799;
  p.errors = 1;
  p.p50_ms = 1.234;
  CHECK(FormatProgress(p, 2) ==
        "[   4.0 s] sent 800, completed 799, errors 1, p50 1.23 ms (last 2 s)");
}

TEST_CASE("load options are validated", "[load]") {
  CHECK(ValidateLoadOptions(Closed(1, 10)).ok());
  CHECK(ValidateLoadOptions(Open(10, 10, 1)).ok());
  LoadOptions bad = Open(0, 10, 1);
  CHECK(absl::IsInvalidArgument(ValidateLoadOptions(bad)));
  bad = Closed(0, 10);
  CHECK(absl::IsInvalidArgument(ValidateLoadOptions(bad)));
  bad = Closed(1, 10);
  bad.duration_s = 1;  // both bounds
  CHECK(absl::IsInvalidArgument(ValidateLoadOptions(bad)));
  bad = Closed(1, 0);  // neither
  CHECK(absl::IsInvalidArgument(ValidateLoadOptions(bad)));
  bad = Open(1e6, 0, 1);
  bad.duration_s = 3600;  // 3.6e9 requests
  CHECK(absl::IsInvalidArgument(ValidateLoadOptions(bad)));
}

// --- accounting --------------------------------------------------------------------------------

TEST_CASE("a sender failing every 5th request is counted exactly, and failures are not latency",
          "[load][stats]") {
  DelayedSender sender(milliseconds(1), [](int64_t n) {
    return n % 5 == 4 ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "down") : grpc::Status::OK;
  });
  const LoadOptions options = Closed(2, 100);
  const RunStats stats = Stats(options, RunLoad(options, sender.AsSendFn()));
  CHECK(stats.sent() == 100);
  CHECK(stats.completed() == 100);
  CHECK(stats.ok() == 80);
  CHECK(stats.errors() == std::map<std::string, int64_t>{{"UNAVAILABLE", 20}});
  CHECK(stats.ErrorsLine() == "errors: UNAVAILABLE 20");
  CHECK(stats.latency().count == 80);

  // With records made by hand: slow failures leave the percentiles of the OK requests alone.
  std::vector<RequestRecord> records;
  for (int i = 1; i <= 100; ++i) {
    const bool fails = i % 5 == 0;
    records.push_back({0, 0, fails ? 1000.0 : static_cast<double>(i),
                       fails ? static_cast<int>(grpc::StatusCode::UNAVAILABLE) : 0});
  }
  const LatencySummary summary = RunStats(RunInfo{}, records, 0).latency();
  CHECK(summary.count == 80);
  CHECK(summary.max == 99);
  CHECK(summary.p99 == 99);
  CHECK(summary.min == 1);
}

// An open-loop run made by hand: 10 scheduled every 100 ms, 7 OK (latency 1..7 ms), one
// UNAVAILABLE, one DEADLINE_EXCEEDED, one dropped.
RunStats HandMadeRun() {
  std::vector<RequestRecord> records;
  for (int i = 0; i < 7; ++i) {
    const double t = 100.0 * i;
    records.push_back({t, t + 0.5, t + 1 + i, 0});
  }
  records.push_back({700, 700, 705, static_cast<int>(grpc::StatusCode::UNAVAILABLE)});
  records.push_back({800, 800, 900, static_cast<int>(grpc::StatusCode::DEADLINE_EXCEEDED)});
  records.push_back({900, 900, -1, kDroppedClientCap});
  RunInfo info;
  info.model = "mlp";
  info.mode = LoopMode::kOpen;
  info.arrival = Arrival::kPoisson;
  info.target_rate = 10;
  info.concurrency = 1000;
  return RunStats(info, records, 1000);
}

TEST_CASE("the JSON summary has exactly the documented shape", "[load][stats]") {
  const RunStats stats = HandMadeRun();
  const nlohmann::ordered_json json = stats.ToJson();
  std::vector<std::string> keys;
  for (const auto& item : json.items()) keys.push_back(item.key());
  CHECK(keys == std::vector<std::string>{"model", "mode", "arrival", "target_rate", "concurrency",
                                         "duration_s", "sent", "completed", "ok", "throughput_rps",
                                         "latency_ms", "errors"});
  CHECK(json["model"] == "mlp");
  CHECK(json["mode"] == "open");
  CHECK(json["arrival"] == "poisson");
  CHECK(json["target_rate"] == 10.0);
  CHECK(json["concurrency"] == 1000);
  CHECK(json["duration_s"] == 1.0);
  CHECK(json["sent"] == 9);
  CHECK(json["completed"] == 9);
  CHECK(json["ok"] == 7);
  CHECK(json["throughput_rps"] == 7.0);
  std::vector<std::string> latency_keys;
  for (const auto& item : json["latency_ms"].items()) latency_keys.push_back(item.key());
  CHECK(latency_keys ==
        std::vector<std::string>{"count", "min", "mean", "p50", "p90", "p95", "p99", "max"});
  CHECK(json["latency_ms"]["count"] == 7);
  CHECK(json["latency_ms"]["min"] == 1.0);
  CHECK(json["latency_ms"]["p50"] == 4.0);
  CHECK(json["latency_ms"]["max"] == 7.0);
  CHECK(json["latency_ms"]["mean"] == 4.0);
  REQUIRE(json["errors"].is_object());
  CHECK(json["errors"].size() == 3);
  CHECK(json["errors"].at("UNAVAILABLE") == 1);
  CHECK(json["errors"].at("DEADLINE_EXCEEDED") == 1);
  CHECK(json["errors"].at("DROPPED_CLIENT_CAP") == 1);
  // It survives a text round trip (what scripts/bench.sh does with python3's json).
  CHECK(nlohmann::json::parse(json.dump()) == nlohmann::json::parse(json.dump(1)));

  RunInfo closed;
  closed.model = "mlp";
  closed.mode = LoopMode::kClosed;
  const nlohmann::ordered_json closed_json = RunStats(closed, {}, 0).ToJson();
  CHECK(closed_json["target_rate"] == 0.0);
  CHECK(closed_json["arrival"] == "none");
  CHECK(closed_json["errors"].is_object());
  CHECK(closed_json["latency_ms"]["count"] == 0);
}

TEST_CASE("the CSV has one row per request, latency empty without a status", "[load][stats]") {
  std::ostringstream out;
  HandMadeRun().WriteCsv(out);
  std::vector<std::string> lines;
  std::istringstream in(out.str());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 11);
  CHECK(lines[0] == "scheduled_ms,sent_ms,latency_ms,code");
  CHECK(lines[1] == "0.000,0.500,1.000,OK");
  CHECK(lines[8] == "700.000,700.000,5.000,UNAVAILABLE");
  CHECK(lines[10] == "900.000,900.000,,DROPPED_CLIENT_CAP");
}

TEST_CASE("the report names rates, throughput, latency and errors", "[load][stats]") {
  const RunStats stats = HandMadeRun();
  CHECK(stats.achieved_rate() == Approx(9.0));
  CHECK(stats.throughput() == Approx(7.0));
  const std::string report = stats.Report();
  using Catch::Matchers::Contains;
  CHECK_THAT(report, Contains("rate: target 10.0 rps, achieved 9.0 rps"));
  CHECK_THAT(report, Contains("throughput: 7.0 ok/s over 1.00 s"));
  CHECK_THAT(report, Contains("p50 4.00 ms"));
  CHECK_THAT(report, Contains("mean 4.00 ms"));
  CHECK_THAT(report, Contains("errors: DEADLINE_EXCEEDED 1, DROPPED_CLIENT_CAP 1, UNAVAILABLE 1"));
}

// --- the command's flags -----------------------------------------------------------------------

TEST_CASE("kiln-bench load rejects bad flags with exit status 2", "[load][flags]") {
  const std::vector<std::string> base = {"--addr=127.0.0.1:1", "--model=mlp"};
  auto run = [&](std::vector<std::string> more) {
    std::vector<std::string> args = base;
    args.insert(args.end(), more.begin(), more.end());
    return RunLoadCommand(args);
  };
  CHECK(RunLoadCommand({"--mode=closed"}) == kExitUsage);  // no --model
  CHECK(run({}) == kExitUsage);                            // no --mode
  CHECK(run({"--mode=sideways"}) == kExitUsage);
  CHECK(run({"--mode=open"}) == kExitUsage);  // no --rate
  CHECK(run({"--mode=open", "--rate=0"}) == kExitUsage);
  CHECK(run({"--mode=open", "--rate=-5"}) == kExitUsage);
  CHECK(run({"--mode=open", "--rate=fast"}) == kExitUsage);
  CHECK(run({"--mode=open", "--rate=inf"}) == kExitUsage);
  CHECK(run({"--mode=open", "--rate=10", "--arrival=bursty"}) == kExitUsage);
  CHECK(run({"--mode=closed", "--rate=10"}) == kExitUsage);
  CHECK(run({"--mode=closed", "--arrival=constant"}) == kExitUsage);
  CHECK(run({"--mode=closed", "--concurrency=0"}) == kExitUsage);
  CHECK(run({"--mode=closed", "--concurrency=many"}) == kExitUsage);
  CHECK(run({"--mode=closed", "--requests=10", "--duration_s=1"}) == kExitUsage);
  CHECK(run({"--mode=closed", "--requests=0"}) == kExitUsage);
  CHECK(run({"--mode=closed", "--duration_s=0"}) == kExitUsage);
  CHECK(run({"--mode=closed", "--batch=0"}) == kExitUsage);
  CHECK(run({"--mode=closed", "--timeout_ms=0"}) == kExitUsage);
  CHECK(run({"--mode=closed", "--warmup_requests=-1"}) == kExitUsage);
  CHECK(run({"--mode=open", "--rate=1000000", "--duration_s=3600"}) == kExitUsage);
  CHECK(run({"--mode=closed", "--bogus=1"}) == kExitUsage);
  CHECK(run({"--help"}) == kExitOk);
}

TEST_CASE("kiln-bench load exits 1 when it cannot reach the server", "[load][flags]") {
  // Port 1 on loopback: nothing listens, the ModelMetadata RPC fails at once.
  CHECK(RunLoadCommand({"--addr=127.0.0.1:1", "--model=mlp", "--mode=closed", "--requests=5",
                        "--timeout_ms=2000"}) == kExitFailure);
  CHECK(RunLoadCommand({"--addr=127.0.0.1:1", "--model=mlp", "--mode=closed", "--requests=5",
                        "--json=/nonexistent-dir/out.json"}) == kExitFailure);
}

}  // namespace
}  // namespace kiln::bench
