// A model's warm template (docs/ARCHITECTURE.md, "Processes"): a child of the zygote that warms
// the model once, on one intra-op thread, and then forks that model's workers already warm.
//
// One forward pass on one thread starts no OpenMP pool, so after warming (tokenizer, every shape
// of the plan settled, memory measured against the worker's budget, recorded traffic replayed,
// as a worker would) the template still has exactly one thread and may fork; it checks that
// before each fork (common/fork_safety.h). A worker it forks confirms each shape with one call
// (worker/warmup.h, ConfirmWarmup) and reports ready: a fork plus one call per shape instead of a
// whole settling warmup per worker. Such workers do not die with the template; the zygote is
// their subreaper.
//
// The zygote forks the template on the first request for a worker of the model that asks for it
// (SpawnWorker.from_template), forwards it and every later one with its fds, and forwards the
// template's `started` and `exited` events to the master. When the template's warmup fails, it
// answers every request with WorkerFailed on the worker's channel, so the master sees why.
#ifndef KILN_SERVER_ZYGOTE_WARM_TEMPLATE_H_
#define KILN_SERVER_ZYGOTE_WARM_TEMPLATE_H_

#include <sys/types.h>

#include <vector>

#include "absl/status/statusor.h"
#include "common/frame_channel.h"
#include "proto/worker_frames.pb.h"
#include "server/zygote/zygote_model.h"

namespace kiln {

// Forks the template of `model` from the zygote's only thread. `first` (the first request for
// one of its workers) says how to warm: memory budget, replayed shapes, idle priority. Returns
// its pid in the zygote, whose end of the template's channel is `zygote_end`; never returns in
// the template, which closes `close_in_child` (the zygote's other fds: its channel to the master,
// its signalfd, the other templates' channels) and exits with the zygote (PR_SET_PDEATHSIG) or
// when `zygote_end` closes.
absl::StatusOr<pid_t> ForkWarmTemplate(const ZygoteModel& model, const internal::SpawnWorker& first,
                                       FrameChannel& zygote_end,
                                       const std::vector<int>& close_in_child);

}  // namespace kiln

#endif  // KILN_SERVER_ZYGOTE_WARM_TEMPLATE_H_
