// Invariant 1 of docs/ARCHITECTURE.md ("Processes"), enforced: before a fork the forking process
// has exactly one thread, has created no gRPC object, has run no forward pass on more than one
// intra-op thread (an OpenMP pool that the child would inherit without its threads) and has made
// no CUDA call. A warm template runs its passes on one thread, so it may fork. Code that does one
// of those things notes it here; ForkChecked() refuses to fork once any of them happened.
//
// Thread-safety: every function may be called from any thread (the notes are atomics).
#ifndef KILN_COMMON_FORK_SAFETY_H_
#define KILN_COMMON_FORK_SAFETY_H_

#include <sys/types.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln {

// Called by the code that does the thing, before doing it.
void NoteGrpcObjectCreated();
// `intra_op_threads`: the thread count the pass may use (at::get_num_threads()).
void NoteForwardPass(int intra_op_threads);
void NoteCudaCall();

// Threads of this process, from /proc/self/task; -1 if it cannot be read.
int CountThreads();

// OK when this process may fork safely; otherwise FailedPrecondition saying what happened
// (e.g. "3 threads are running (fork needs exactly 1)"). `what` names the fork in the message.
absl::Status CheckForkSafe(absl::string_view what);

// CheckForkSafe, then flushes glog (so no buffered line is written twice) and forks.
// Returns the child's pid in the parent and 0 in the child, like fork().
absl::StatusOr<pid_t> ForkChecked(absl::string_view what);

}  // namespace kiln

#endif  // KILN_COMMON_FORK_SAFETY_H_
