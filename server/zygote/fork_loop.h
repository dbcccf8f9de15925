// What the zygote and the warm templates have in common (docs/ARCHITECTURE.md, "Processes"):
// each forks workers when asked over its channel, and tells the process upstream (the master,
// or for a template the zygote) when one started and when it exited. SIGCHLD arrives through a
// signalfd, so neither has a signal handler.
//
// Thread-safety: these run in a single-threaded forking process; nothing here is shared.
#ifndef KILN_SERVER_ZYGOTE_FORK_LOOP_H_
#define KILN_SERVER_ZYGOTE_FORK_LOOP_H_

#include <sys/types.h>

#include <map>
#include <vector>

#include "common/frame_channel.h"
#include "proto/worker_frames.pb.h"
#include "server/zygote/zygote_model.h"
#include "worker/worker_process.h"

namespace kiln {

// Blocks SIGCHLD and returns a signalfd for it (-1 on failure).
int SignalFdForChildren();

// The master's control signals were blocked for its own signal loop. TERM and HUP stay the
// master's: systemd sends TERM to the whole cgroup, and the forking processes must outlive the
// master's drain, so they ignore them and leave when their channel closes. INT (Ctrl-C in a
// terminal, "exit at once") gets its default back.
void SetForkingProcessSignals();

void CloseAll(const std::vector<int>& fds);

// What a worker (or a template) of `model` warms with, as `spawn` asks: the memory budget, the
// replayed shapes, the model's tokenizer and recorded requests.
WarmupOptions WarmupOptionsFor(const internal::SpawnWorker& spawn, const ZygoteModel& model);

// Forks the worker `spawn` asks for, with `fds` = {its channel end, its arena memfd}, answers
// `started` upstream and returns its pid, or -1 when it could not fork (then the master sees no
// `started`, and EOF on the worker's channel). The parent's copies of `fds` are closed. In the
// child it never returns: it closes `close_in_child` (every fd of the parent's own: `upstream`,
// its signalfd, its templates' channels) and runs the worker, warm from `warmth` when that is
// set.
pid_t ForkWorker(const internal::SpawnWorker& spawn, std::vector<int> fds, const ZygoteModel& model,
                 const TemplateWarmth* warmth, FrameChannel& upstream,
                 const std::vector<int>& close_in_child);

// Drains `signal_fd` (SignalFdForChildren) and reaps every exited child. Those in `workers` (pid ->
// worker id) are reported upstream as `exited` and erased; the pids of the others (templates) are
// returned. When upstream is gone the process exits 0.
std::vector<pid_t> ReapChildren(int signal_fd, std::map<pid_t, int>& workers,
                                FrameChannel& upstream);

}  // namespace kiln

#endif  // KILN_SERVER_ZYGOTE_FORK_LOOP_H_
