// The worker process: what runs in a child the zygote forked (docs/ARCHITECTURE.md, "Processes").
//
// It owns nothing but its model (inherited from the zygote, weights shared with every other
// process), its channel to the master and its shared-memory arena. It drops to idle CPU priority
// (when asked), sets up its threads and device, warms every shape of the plan, reports to the
// master, then serves one call at a time until the master closes the channel; the master's
// Promote returns it to normal priority before its first real request.
#ifndef KILN_WORKER_WORKER_PROCESS_H_
#define KILN_WORKER_WORKER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/frame_channel.h"
#include "common/shared_arena.h"
#include "worker/text_batch.h"
#include "worker/torch_model.h"
#include "worker/warmup.h"

namespace kiln {

// What a worker forked from its model's warm template (server/zygote/warm_template.h) inherits from
// it: the template's warmup (the worker confirms it instead of warming again) and, for its report,
// the template's pid, warmup time and private memory.
struct TemplateWarmth {
  const WarmupOutcome* outcome = nullptr;
  pid_t pid = 0;
  double warmup_ms = 0;
  int64_t private_bytes = 0;
};

struct WorkerOptions {
  int worker_id = 0;
  int intra_op_threads = 1;
  // The CPU plan chose intra_op_threads: with more than one, a worker whose calls are short
  // tries one too and keeps it unless the planned ones were faster by more than a margin
  // (worker/warmup.h, TriesOneThread and KeepsOneThread).
  bool intra_op_threads_automatic = false;
  int device_index = -1;            // CUDA device for KIND_GPU; -1 = CPU
  bool warmup = true;               // false only for the --warmup=off baseline
  // Load and warm at SCHED_IDLE, and return to normal priority on the master's Promote
  // (common/idle_priority.h).
  bool warm_at_idle_priority = false;
  // The memory budget, replayed shapes, tokenizer (text models: the one the master loaded
  // before the fork; it also serves) and recorded requests to warm with.
  WarmupOptions warm;
  // Forked from a warm template (null: forked by the zygote, it warms by itself). With one
  // intra-op thread on the CPU (the pool asks for a template only then) it confirms the
  // template's warmup (ConfirmWarmup); otherwise it settles every shape again (more threads
  // change the kernels' work split). Such a worker does not die with its parent: the template
  // may be replaced while it serves.
  const TemplateWarmth* from_template = nullptr;
  // Tests only (kiln-server --test_only_cold_calls): serve every call on a freshly loaded copy
  // of the model that has never run, so the readiness check meets a cold path.
  bool cold_calls_for_test = false;
};

// Runs the worker in the current (freshly forked) process and never returns: it exits 0 when
// the master closes the channel, and non-zero after reporting a fatal error (e.g. warmup
// failed) to the master as WorkerFailed. `shared` is the model the zygote inherited from the
// master; when it is null (the --share_weights=off baseline) the worker loads its own copy of
// `spec` from disk.
[[noreturn]] void RunWorker(const ModelSpec& spec, TorchModel* shared, const WorkerOptions& options,
                            FrameChannel channel, std::unique_ptr<SharedArena> arena);

}  // namespace kiln

#endif  // KILN_WORKER_WORKER_PROCESS_H_
