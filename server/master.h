// The master process (docs/ARCHITECTURE.md, "Processes" and "Startup timeline"): loads the models,
// forks the zygote, waits for its workers to be warm, and only then opens the gRPC port.
#ifndef KILN_SERVER_MASTER_H_
#define KILN_SERVER_MASTER_H_

#include <string>

#include "common/tls_files.h"

namespace kiln {

struct MasterOptions {
  std::string model_repository = "models";
  std::string host = "127.0.0.1";
  int port = 8001;
  int workers_per_model = 0;  // 0: each model's instance_group.count (0 there: automatic)
  int cpus = 0;               // CPUs to size threads to; 0: what the process has (cpu_probe.h)
  // Workers warm at idle CPU priority where the process may return to normal afterwards.
  bool warm_at_idle_priority = true;
  bool warmup = true;
  bool share_weights = true;  // false: each worker loads its own copy (a baseline mode)
  // CPU workers are forked from a warm template per model (server/zygote/warm_template.h); false:
  // each worker warms by itself (a baseline mode, and a fallback).
  bool warm_template = true;
  bool cold_calls_for_test = false;  // --test_only_cold_calls
  std::string lock_dir = "/tmp";
  int drain_timeout_s = 30;
  int startup_timeout_s = 600;
  int max_message_mb = 64;
  int max_concurrent_streams = 100;  // calls open at once per client connection
  int grpc_memory_mb = 0;            // gRPC's memory quota (grpc::ResourceQuota); 0 = unbounded
  std::string state_dir;   // traffic profiles; empty = no recording
  int record_samples = 0;  // real requests kept per model in state_dir; 0 = none
  // --model_control_mode=explicit: the RepositoryModelLoad/Unload RPCs reload models. Off by
  // default: the served models then change only with the repository and SIGHUP.
  bool model_control = false;
  // TLS on the gRPC and metrics ports (common/tls_files.h); off when `tls.cert` is empty.
  TlsFiles tls;
  // Prometheus metrics over HTTP on this port of `host` (server/metrics/metrics_endpoint.h); 0:
  // none.
  int metrics_port = 8002;
  int metrics_memory_interval_s = 5;  // how often the processes' memory is sampled
};

// Runs the server until TERM (drain, then returns 0) or INT (exits the process with 130 at
// once, without returning).
// Returns 1 after logging why when startup fails. Must be called from main's only thread.
int RunMaster(const MasterOptions& options);

}  // namespace kiln

#endif  // KILN_SERVER_MASTER_H_
