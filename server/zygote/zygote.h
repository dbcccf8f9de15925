// The zygote (docs/ARCHITECTURE.md, "Processes"): a frozen, single-threaded copy of the master
// taken right after the models were loaded. Whenever the master asks for a worker (startup,
// respawn, scale-up) it has the model's warm template fork one (server/zygote/warm_template.h), or
// forks it itself (GPU, workers of several threads, --warm_template=off): a new worker costs a fork
// plus a confirmation or its own warmup, never a reload. It tells the master when a worker
// starts and exits.
#ifndef KILN_SERVER_ZYGOTE_ZYGOTE_H_
#define KILN_SERVER_ZYGOTE_ZYGOTE_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/frame_channel.h"
#include "common/model_config_loader.h"
#include "server/zygote/zygote_model.h"

namespace kiln {

// Runs the zygote loop in the current, freshly forked process and never returns. `models` holds
// the served model versions by ModelSpec::key(). It exits when the master closes `master` or
// dies (PR_SET_PDEATHSIG); its templates and the workers it forked itself die with it, while the
// templates' workers leave when the master closes their channels. It is the subreaper of the
// templates' workers.
//
// Protocol: the master sends ZygoteCommand{spawn} with two fds (the worker's channel end and
// its arena memfd); the zygote forks, answers ZygoteEvent{started} with the pid, and later
// ZygoteEvent{exited} with the exit status.
[[noreturn]] void RunZygote(const std::map<std::string, ZygoteModel>& models, FrameChannel master);

// Forks the zygote, which runs RunZygote(models, zygote_end). Call it from the master's only
// thread, so that the zygote's PR_SET_PDEATHSIG fires when the master exits. Returns the
// zygote's pid in the master; never returns in the zygote. `master_end` is closed in the
// zygote, so that only the master holds it and the zygote (and every worker it forks) sees EOF
// when the master closes it; so are `close_in_child` (the master's listening sockets).
absl::StatusOr<pid_t> ForkZygote(const std::map<std::string, ZygoteModel>& models,
                                 FrameChannel& master_end, FrameChannel zygote_end,
                                 const std::vector<int>& close_in_child = {});

}  // namespace kiln

#endif  // KILN_SERVER_ZYGOTE_ZYGOTE_H_
