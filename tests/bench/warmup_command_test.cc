// kiln-bench warmup without a server: the tables and the JSON made from a WarmupReportResponse,
// and the one-line RPC errors.
#include <catch2/catch.hpp>

#include <string>

#include <nlohmann/json.hpp>

#include "bench/warmup_command.h"
#include "google/protobuf/text_format.h"

namespace kiln::bench {
namespace {

using Catch::Matchers::Contains;

const char kReport[] = R"pb(
  timeline { name: "load_configs" duration_ms: 12.34 since_start_ms: 12.34 }
  timeline { name: "workers_warm" duration_ms: 1500 since_start_ms: 1512.34 }
  memory_limit: "25276.5 MB from physical memory"
  cpu_limit: "1 CPU (CFS quota 1.50 CPUs from /sys/fs/cgroup/cpu.max, rounded down; affinity 2 CPUs)"
  cpus: 1
  thread_plan: "1 CPU: mlp 1 worker (automatic) x 1 intra-op thread (automatic), textcls 1 worker x 2 intra-op threads = 3 threads"
  thread_plan_warnings: "2 workers x their intra-op threads = 3 threads on 1 CPU: oversubscribed"
  openmp_wait: "passive (OMP_WAIT_POLICY=PASSIVE, set by kiln: the binary re-executed itself once)"
  warm_priority: "idle (SCHED_IDLE: only CPU left over), back to normal as the port opens (CAP_SYS_NICE)"
  models {
    model: "textcls"
    worker_budget_bytes: 512000000
    replayed { batch_size: 4 sequence_length: 32 }
    replayed { batch_size: 2 sequence_length: 0 }
    counters {
      requests: 12
      cold_shape_hits: 1
      padded_to_bucket: 3
      padded_batch: 4
      split: 0
      over_budget: 2
    }
    workers {
      worker_id: 3
      pid: 4242
      device: "cpu"
      intra_op_threads: 2
      warmup_ms: 812.5
      peak_anon_bytes: 400000000
      budget_bytes: 512000000
      baseline_anon_bytes: 300000000
      tokenizer_texts: 8
      tokenizer_first_ms: 2.5
      tokenizer_steady_ms: 0.05
      idle_priority: true
      idle_ms: 640.5
      idle_starved: true
      idle_starved_cpu_share: 0.02
      shapes {
        batch_size: 1
        sequence_length: 16
        calls: 5
        first_ms: 120
        steady_ms: 3
        settled_after: 3
        peak_anon_bytes: 310000000
      }
      shapes {
        batch_size: 4
        sequence_length: 128
        calls: 12
        first_ms: 9
        steady_ms: 4.5
        recorded_request: true
      }
      shapes { batch_size: 8 sequence_length: 128 refused: true projected_peak_bytes: 900000000 }
    }
  }
  models { model: "mlp" }
)pb";

WarmupReportResponse Report() {
  WarmupReportResponse response;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(kReport, &response));
  return response;
}

TEST_CASE("warmup: the CPUs, the thread plan, OpenMP waiting and the warm priority", "[warmup]") {
  const std::string text = FormatWarmupReport(Report());
  CHECK_THAT(text, Contains("cpu limit:    1 CPU (CFS quota 1.50 CPUs from "
                            "/sys/fs/cgroup/cpu.max, rounded down; affinity 2 CPUs)\n"));
  CHECK_THAT(text, Contains("threads:      1 CPU: mlp 1 worker (automatic) x 1 intra-op thread "
                            "(automatic), textcls 1 worker x 2 intra-op threads = 3 threads\n"));
  CHECK_THAT(text, Contains("  warning: 2 workers x their intra-op threads = 3 threads on 1 CPU: "
                            "oversubscribed\n"));
  CHECK_THAT(text, Contains("openmp wait:  passive (OMP_WAIT_POLICY=PASSIVE, set by kiln"));
  CHECK_THAT(text, Contains("warming at:   idle (SCHED_IDLE: only CPU left over), back to normal "
                            "as the port opens (CAP_SYS_NICE)\n"));
  CHECK_THAT(text,
             Contains("    priority: idle for 640.5 ms, then normal (starved: 2.0% of the CPU "
                      "time it waited for)\n"));

  WarmupReportResponse normal = Report();
  internal::WarmupReport& worker = *normal.mutable_models(0)->mutable_workers(0);
  worker.set_idle_starved(false);
  CHECK_THAT(FormatWarmupReport(normal),
             Contains("    priority: idle while warming (640.5 ms), then normal\n"));
  worker.set_idle_priority(false);
  worker.set_priority_note("cannot watch for starvation");
  CHECK_THAT(FormatWarmupReport(normal),
             Contains("    priority: normal (cannot watch for starvation)\n"));
  CHECK(Report().cpus() == 1);
}

TEST_CASE("warmup: a worker forked from a warm template says which, and the memory costs",
          "[warmup]") {
  WarmupReportResponse report = Report();
  CHECK_THAT(FormatWarmupReport(report), !Contains("warm template"));
  internal::WarmupReport& worker = *report.mutable_models(0)->mutable_workers(0);
  worker.set_template_pid(77);
  worker.set_template_warmup_ms(1202.5);
  worker.set_template_private_bytes(123'100'000);
  worker.set_private_peak_bytes(31'000'000);
  CHECK_THAT(FormatWarmupReport(report),
             Contains("    forked from the warm template pid 77 (warmed in 1202.5 ms, 123.1 MB "
                      "private); private peak 31.0 MB\n"));
}

TEST_CASE("warmup: each model's warm workers, and whether it is SERVING or degraded", "[warmup]") {
  WarmupReportResponse response = Report();
  ModelWarmupReport& model = *response.mutable_models(0);
  model.set_target_workers(4);
  model.set_warm_workers(3);
  model.set_min_ready(1);
  model.set_serving(true);
  model.set_degraded(true);
  CHECK_THAT(FormatWarmupReport(response),
             Contains("\nmodel textcls\n  workers:         3/4 warm, SERVING needs 1: SERVING, "
                      "degraded (a worker is being replaced)\n"));
  model.set_warm_workers(0);
  model.set_serving(false);
  model.set_degraded(false);
  CHECK_THAT(FormatWarmupReport(response),
             Contains("  workers:         0/4 warm, SERVING needs 1: NOT_SERVING\n"));
  // A server that reports no target (older than min_ready) gets no line.
  CHECK_THAT(FormatWarmupReport(Report()), !Contains("  workers:  "));
}

TEST_CASE("warmup: the timeline, the memory limit and each model's settings", "[warmup]") {
  const std::string text = FormatWarmupReport(Report());
  CHECK_THAT(text, Contains("startup timeline:\n"
                            "          ms  since start ms  phase\n"
                            "        12.3            12.3  load_configs\n"
                            "      1500.0          1512.3  workers_warm\n"));
  CHECK_THAT(text, Contains("memory limit: 25276.5 MB from physical memory\n"));
  CHECK_THAT(text, Contains("\nmodel textcls\n  worker budget:   512.0 MB\n"
                            "  replayed shapes: 4x32, 2 (batch x seq)\n"));
  CHECK_THAT(text, Contains("  counters:        requests 12, cold_shape_hits 1, "
                            "padded_to_bucket 3, padded_batch 4, split 0, over_budget 2\n"));
  CHECK_THAT(text, Contains("\nmodel mlp\n  worker budget:   none\n  replayed shapes: none\n"));
  CHECK_THAT(text, Contains("  no ready workers\n"));
}

TEST_CASE("warmup: a worker that chose its intra-op threads at warmup says how", "[warmup]") {
  WarmupReportResponse response = Report();
  internal::WarmupReport& worker = *response.mutable_models(0)->mutable_workers(0);
  worker.set_intra_op_threads(1);
  worker.set_threads_note("one of 2 planned: steady 20.1 ms in all on one vs 25.5 ms on 2");
  CHECK_THAT(FormatWarmupReport(response),
             Contains("  worker 3: pid 4242, cpu, 1 intra-op thread(s) (one of 2 planned: steady "
                      "20.1 ms in all on one vs 25.5 ms on 2)\n"));
}

TEST_CASE("warmup: per worker its times and one row per shape, refused ones marked", "[warmup]") {
  const std::string text = FormatWarmupReport(Report());
  CHECK_THAT(text, Contains("  worker 3: pid 4242, cpu, 2 intra-op thread(s)\n"
                            "    warmup 812.5 ms, peak anon 400.0 MB, baseline anon 300.0 MB, "
                            "budget 512.0 MB\n"
                            "    tokenizer: 8 texts, first 2.50 ms, steady 0.05 ms\n"));
  CHECK_THAT(text, Contains("    batch    seq   first ms  steady p50 ms  first/steady  calls  "
                            "settled after  peak anon MB  inputs\n"
                            "        1     16    120.000          3.000          40.0      5  "
                            "            3        310.0  synthetic\n"
                            "        4    128      9.000          4.500           2.0     12  "
                            "        never            -  recorded\n"
                            "        8    128  REFUSED (projected 900.0 MB)\n"));
}

TEST_CASE("warmup: an empty report says so instead of printing empty tables", "[warmup]") {
  const std::string text = FormatWarmupReport(WarmupReportResponse());
  CHECK(text == "startup timeline: none reported\nmemory limit: unknown\n\nno models\n");
}

TEST_CASE("warmup --json: proto field names, every field, parseable", "[warmup]") {
  absl::StatusOr<std::string> json = WarmupReportJson(Report());
  REQUIRE(json.ok());
  CHECK(json->back() == '\n');
  const nlohmann::json doc = nlohmann::json::parse(*json);
  CHECK(doc["memory_limit"] == "25276.5 MB from physical memory");
  CHECK(doc["timeline"][1]["since_start_ms"] == 1512.34);
  const nlohmann::json& model = doc["models"][0];
  CHECK(model["worker_budget_bytes"] == "512000000");  // int64: a string in proto3 JSON
  CHECK(model["counters"]["split"] == "0");            // zero fields are printed too
  const nlohmann::json& shapes = model["workers"][0]["shapes"];
  CHECK(shapes[0]["settled_after"] == 3);
  CHECK(shapes[1]["refused"] == false);
  CHECK(shapes[2]["refused"] == true);
  CHECK(shapes[2]["projected_peak_bytes"] == "900000000");
  CHECK(doc["models"][1]["workers"].empty());
}

TEST_CASE("warmup: RPC failures are one line, with a hint where one helps", "[warmup]") {
  CHECK(WarmupRpcError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "failed to connect"), "") ==
        "kiln-bench: WarmupReport failed: UNAVAILABLE: failed to connect");
  CHECK_THAT(WarmupRpcError(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ""), ""),
             Contains("UNIMPLEMENTED") && Contains("no kiln.KilnService: an older kiln-server?"));
  CHECK_THAT(WarmupRpcError(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown model 'x'"), "x"),
             Contains("NOT_FOUND: unknown model 'x' (leave out --model for every model)"));
}

}  // namespace
}  // namespace kiln::bench
