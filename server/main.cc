// kiln-server: parses the flags and runs the master (server/master.h), which forks the zygote
// and the workers itself; one binary plays every role.
//
// Flags are gflags, because LibTorch's c10 already registers its own gflags and glog's: one
// parser keeps --v, --vmodule, --logtostderr and friends working.
#include <gflags/gflags.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_split.h"
#include "common/openmp_wait.h"
#include "glog/logging.h"
#include "server/master.h"
#include "server/passive_openmp_getenv.h"
#include "server/port_lock.h"
#include "server/zygote/zygote_mode.h"

DEFINE_string(model_repository, "models",
              "Model repository in Triton's layout: one directory per model holding Triton's "
              "config.pbtxt (+ kiln.pbtxt) and <version>/model.pt (+ model.safetensors, "
              "tokenizer). See docs/model-repository.md.");
DEFINE_string(host, "127.0.0.1",
              "Address the gRPC port (and the metrics port) listens on; loopback by default, "
              "0.0.0.0 or [::] to serve other machines.");
DEFINE_int32(port, 8001,
             "gRPC port (Open Inference Protocol, health, reflection). 0 = any free "
             "port (logged when ready).");
DEFINE_int32(
    workers, 0,
    "Workers per model; 0 = each model's instance_group count, and where it has "
    "no instance_group, as many as the CPUs allow (one intra-op thread each; docs/operating.md, "
    "\"Threads, workers and the CPUs\").");
DEFINE_int32(cpus, 0,
             "CPUs to size workers and intra-op threads to; 0 = what the process has: its CPU "
             "affinity (cpuset, taskset) and its cgroup's CFS quota (a Kubernetes CPU limit), "
             "rounded down.");
DEFINE_string(warmup_priority, "idle",
              "idle: workers warm at SCHED_IDLE (taking only CPU left over by whatever else "
              "runs, e.g. a replica serving beside this one) through the readiness check, and "
              "return to normal priority as the port opens; used only where the process may "
              "return (CAP_SYS_NICE, or RLIMIT_NICE: "
              "systemd LimitNICE=+0), else normal, as the log says. normal: warm at normal "
              "priority.");
DEFINE_string(warmup, "on",
              "on: workers warm every shape of the plan before the server is "
              "ready. off: baseline mode, workers serve cold (for benchmarks).");
DEFINE_string(share_weights, "on",
              "on: the master loads each model once and every worker "
              "shares its weights. off: baseline mode, each worker loads its own copy after the "
              "fork (for benchmarks).");
DEFINE_string(warm_template, "on",
              "on: each CPU model's workers are forked from a template process that warmed the "
              "model once on one intra-op thread; a new worker confirms every shape with one "
              "call instead of warming again. off: each worker runs the whole warmup itself (a "
              "baseline for benchmarks, and a fallback).");
DEFINE_bool(zygote_mode, false,
            "Internal: run as a zygote started by the master (fork+exec) to replace one that "
            "died or to load a reload's versions; its channel to the master is fd 3. Not for "
            "direct use.");
DEFINE_bool(zygote_idle_load, false,
            "Internal, with --zygote_mode: load at idle CPU priority, then return to normal.");
DEFINE_string(zygote_models, "",
              "Internal, with --zygote_mode: the served versions to load (name:version, comma "
              "separated); empty = every version the repository serves.");
DEFINE_bool(test_only_cold_calls, false,
            "For kiln's tests only: workers serve every call on a freshly loaded copy of the "
            "model that has never run, so the readiness check meets a cold path and must fail.");
DEFINE_string(lock_dir, "",
              "Where the per-port lock file lives: a directory no other user can write to. "
              "Default: $RUNTIME_DIRECTORY (systemd), else $XDG_RUNTIME_DIR, else /run/kiln "
              "(root) or /tmp/kiln-<uid>, made 0700. A second server on the same port refuses "
              "to start.");
DEFINE_int32(drain_timeout_s, 30, "On SIGTERM, how long in-flight requests may take to finish.");
DEFINE_int32(startup_timeout_s, 600,
             "How long loading and warming may take before startup "
             "fails.");
DEFINE_int32(max_message_mb, 64, "Largest gRPC request or response, in MiB.");
DEFINE_int32(max_concurrent_streams, 100,
             "Calls (unary or streams) one client connection may have open at once (HTTP/2 "
             "SETTINGS_MAX_CONCURRENT_STREAMS); the client holds further calls until one ends.");
DEFINE_int32(grpc_memory_mb, 0,
             "Memory gRPC may use for the port's connections and calls (grpc::ResourceQuota), "
             "in MiB; 0: unbounded. Near it, gRPC shrinks its flow-control windows and "
             "refuses new calls (RESOURCE_EXHAUSTED); the requests kiln queues are bounded by "
             "each model's queue, not by this.");
DEFINE_string(state_dir, "",
              "Where traffic-shaped warmup keeps <model>.traffic.pbtxt: the shapes served are "
              "recorded there (every 30 s and at shutdown) and replayed by the next start's "
              "warmup. Empty: no recording.");
DEFINE_string(model_control_mode, "none",
              "none: the RepositoryModelLoad and RepositoryModelUnload RPCs are refused "
              "(FAILED_PRECONDITION) and the served models change only with the repository and "
              "SIGHUP. explicit: anyone who can reach the port may load, reload and unload "
              "models with them (as Triton's --model-control-mode=explicit).");
DEFINE_string(tls_cert, "",
              "PEM certificate chain: serve the gRPC port and the metrics port over TLS (with "
              "--tls_key). Empty: plaintext.");
DEFINE_string(tls_key, "", "PEM private key of --tls_cert.");
DEFINE_string(tls_ca, "",
              "PEM CA certificates: with --tls_cert, both ports require a client certificate "
              "signed by one of them (mutual TLS).");
DEFINE_int32(metrics_port, 8002,
             "Prometheus metrics over HTTP at http://<host>:<port>/metrics (text format 0.0.4; "
             "Triton's default port). Bound at start, answering from the zygote's fork on, so "
             "warmup progress shows before the gRPC port opens. 0: no metrics endpoint.");
DEFINE_int32(metrics_memory_interval_s, 5,
             "How often the processes' memory (PSS, private, shared) is sampled for the metrics; "
             "a scrape never reads it.");
DEFINE_int32(record_samples, 0,
             "With --state_dir: also keep up to N real requests per model, one per shape "
             "(their inputs, or a text model's texts, in <model>.samples.safetensors), whose "
             "data the next warmup runs on. 0: off.");

namespace {

constexpr char kUsage[] =
    "a gRPC model server whose workers are warm before it says ready.\n"
    "\n"
    "Usage: kiln-server --model_repository=DIR [--host=ADDR] [--port=N] [flags]\n"
    "\n"
    "The master loads every model of the repository once (weights memory-mapped and shared),\n"
    "forks a zygote that forks the workers, waits until they are warm, then opens the gRPC port\n"
    "(Open Inference Protocol, grpc.health.v1, reflection) and tells systemd READY=1.\n"
    "Prometheus metrics: http://HOST:8002/metrics (--metrics_port).\n"
    "Anyone who reaches the port may infer and read metadata; --host is loopback by default,\n"
    "TLS and client certificates with --tls_cert/--tls_key/--tls_ca, model load/unload RPCs\n"
    "only with --model_control_mode=explicit.\n"
    "Threads are sized to the CPUs the process has (affinity and CFS quota); OpenMP threads\n"
    "wait passively (OMP_WAIT_POLICY=PASSIVE unless the environment sets it or GOMP_SPINCOUNT).\n"
    "Signals: TERM drains in-flight requests and exits 0; INT exits at once.";

constexpr char kLogFlagsHelp[] =
    "\nLogging (glog's own flags, also accepted):\n"
    "  --logtostderr (default true here)  --stderrthreshold=N  --minloglevel=N\n"
    "  --v=N (verbose level)  --vmodule=file=N,...  --log_dir=DIR\n";

// gflags' built-in --help would list LibTorch's flags too; show only ours plus glog's.
bool HandleHelp(const char* argv0) {
  std::string help, helpshort, version;
  gflags::GetCommandLineOption("help", &help);
  gflags::GetCommandLineOption("helpshort", &helpshort);
  gflags::GetCommandLineOption("version", &version);
  if (version == "true") {
    std::printf("kiln-server %s\n", KILN_VERSION);
    return true;
  }
  if (help != "true" && helpshort != "true") return false;
  gflags::ShowUsageWithFlagsRestrict(argv0, "server/");
  std::fputs(kLogFlagsHelp, stdout);
  return true;
}

// Checks the flags gflags cannot; prints the problem and returns false when one is bad.
bool ValidateFlags() {
  std::string problem;
  if (FLAGS_warmup != "on" && FLAGS_warmup != "off") {
    problem = "--warmup must be on or off, got '" + FLAGS_warmup + "'";
  } else if (FLAGS_share_weights != "on" && FLAGS_share_weights != "off") {
    problem = "--share_weights must be on or off, got '" + FLAGS_share_weights + "'";
  } else if (FLAGS_warm_template != "on" && FLAGS_warm_template != "off") {
    problem = "--warm_template must be on or off, got '" + FLAGS_warm_template + "'";
  } else if (FLAGS_port < 0 || FLAGS_port > 65535) {
    problem = "--port must be in [0, 65535]";
  } else if (FLAGS_workers < 0) {
    problem = "--workers must be >= 0";
  } else if (FLAGS_cpus < 0) {
    problem = "--cpus must be >= 0";
  } else if (FLAGS_warmup_priority != "idle" && FLAGS_warmup_priority != "normal") {
    problem = "--warmup_priority must be idle or normal, got '" + FLAGS_warmup_priority + "'";
  } else if (FLAGS_drain_timeout_s < 0 || FLAGS_startup_timeout_s <= 0) {
    problem = "--drain_timeout_s must be >= 0 and --startup_timeout_s > 0";
  } else if (FLAGS_max_message_mb <= 0 || FLAGS_max_message_mb > 2047) {
    problem = "--max_message_mb must be in [1, 2047]";
  } else if (FLAGS_max_concurrent_streams < 1 || FLAGS_max_concurrent_streams > 100000) {
    problem = "--max_concurrent_streams must be in [1, 100000]";
  } else if (FLAGS_grpc_memory_mb < 0 || FLAGS_grpc_memory_mb > 1048576) {
    problem = "--grpc_memory_mb must be in [0, 1048576] (0: unbounded)";
  } else if (FLAGS_metrics_port < 0 || FLAGS_metrics_port > 65535) {
    problem = "--metrics_port must be in [0, 65535] (0: no metrics endpoint)";
  } else if (FLAGS_metrics_port != 0 && FLAGS_metrics_port == FLAGS_port) {
    problem = "--metrics_port must differ from --port";
  } else if (FLAGS_metrics_memory_interval_s < 1 || FLAGS_metrics_memory_interval_s > 3600) {
    problem = "--metrics_memory_interval_s must be in [1, 3600]";
  } else if (FLAGS_record_samples < 0 || FLAGS_record_samples > 1000) {
    problem = "--record_samples must be in [0, 1000]";
  } else if (FLAGS_record_samples > 0 && FLAGS_state_dir.empty()) {
    problem = "--record_samples needs --state_dir";
  } else if (FLAGS_model_control_mode != "none" && FLAGS_model_control_mode != "explicit") {
    problem =
        "--model_control_mode must be none or explicit, got '" + FLAGS_model_control_mode + "'";
  } else if (absl::Status tls =
                 kiln::ValidateTlsFiles({FLAGS_tls_cert, FLAGS_tls_key, FLAGS_tls_ca});
             !tls.ok()) {
    problem = std::string(tls.message());
  }
  if (problem.empty()) return true;
  std::fprintf(stderr, "kiln-server: %s (see --help)\n", problem.c_str());
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  // First of all: libgomp read its settings before main(), from this binary's getenv
  // (server/passive_openmp_getenv.h); this sets them for real, or re-executes the binary once
  // where libgomp did not ask, to make OpenMP threads wait passively, unless the environment
  // already says how they wait.
  kiln::EnsurePassiveOpenMpWait(argv, kiln::GetenvAnsweredPassiveOpenMpWait());
  gflags::SetUsageMessage(kUsage);
  gflags::SetVersionString(KILN_VERSION);
  FLAGS_logtostderr = true;  // before parsing, so --logtostderr=false still works
  gflags::ParseCommandLineNonHelpFlags(&argc, &argv, /*remove_flags=*/true);
  if (HandleHelp(argv[0])) return 0;
  if (argc > 1) {
    std::fprintf(stderr,
                 "kiln-server: unexpected argument '%s' (flags are --name=value; see --help)\n",
                 argv[1]);
    return 2;
  }
  if (!ValidateFlags()) return 2;
  google::InitGoogleLogging(argv[0]);
  if (FLAGS_zygote_mode) {
    return kiln::RunZygoteMode(
        {FLAGS_model_repository, FLAGS_share_weights == "on", FLAGS_state_dir,
         absl::StrSplit(FLAGS_zygote_models, ',', absl::SkipEmpty()), FLAGS_zygote_idle_load});
  }

  kiln::MasterOptions options;
  options.model_repository = FLAGS_model_repository;
  options.host = FLAGS_host;
  options.port = FLAGS_port;
  options.workers_per_model = FLAGS_workers;
  options.cpus = FLAGS_cpus;
  options.warm_at_idle_priority = FLAGS_warmup_priority == "idle";
  options.warmup = FLAGS_warmup == "on";
  options.share_weights = FLAGS_share_weights == "on";
  options.warm_template = FLAGS_warm_template == "on";
  options.cold_calls_for_test = FLAGS_test_only_cold_calls;
  options.lock_dir = FLAGS_lock_dir.empty()
                         ? kiln::DefaultLockDir(std::getenv("RUNTIME_DIRECTORY"),
                                                std::getenv("XDG_RUNTIME_DIR"), geteuid())
                         : FLAGS_lock_dir;
  options.drain_timeout_s = FLAGS_drain_timeout_s;
  options.startup_timeout_s = FLAGS_startup_timeout_s;
  options.max_message_mb = FLAGS_max_message_mb;
  options.max_concurrent_streams = FLAGS_max_concurrent_streams;
  options.grpc_memory_mb = FLAGS_grpc_memory_mb;
  options.state_dir = FLAGS_state_dir;
  options.record_samples = FLAGS_record_samples;
  options.model_control = FLAGS_model_control_mode == "explicit";
  options.tls = {FLAGS_tls_cert, FLAGS_tls_key, FLAGS_tls_ca};
  options.metrics_port = FLAGS_metrics_port;
  options.metrics_memory_interval_s = FLAGS_metrics_memory_interval_s;
  return kiln::RunMaster(options);
}
