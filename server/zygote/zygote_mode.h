// A zygote started by fork+exec (docs/ARCHITECTURE.md, "Processes" and "Versions and reload"). The
// master forks the first zygote itself, before it starts any thread. Later it has threads (gRPC,
// the pool) and must not fork a copy of itself; it runs this binary again in zygote mode instead
// (posix_spawn): to replace a zygote that died, and to load the versions a reload stages (a new
// generation). The new zygote loads the model versions it is given from the repository, mapping
// the files (an unchanged file's page cache is shared, so its weights cost no second copy), and
// runs RunZygote on its channel, which arrives as fd kZygoteChannelFd. When it cannot load them,
// it sends LoadFailed with the reason on that channel and exits 1.
#ifndef KILN_SERVER_ZYGOTE_ZYGOTE_MODE_H_
#define KILN_SERVER_ZYGOTE_ZYGOTE_MODE_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/frame_channel.h"

namespace kiln {

inline constexpr int kZygoteChannelFd = 3;

// What a zygote started in zygote mode loads: the master's own settings.
struct ZygoteLaunch {
  std::string model_repository;
  bool share_weights = true;
  std::string state_dir;  // recorded requests the templates warm on; "" = none
  // The served versions to load (ModelSpec::key()), each as the repository now resolves it; empty
  // = every version the repository serves.
  std::vector<std::string> models;
  // Start (exec, dynamic loading) and load at idle CPU priority (common/idle_priority.h), then
  // return to normal: the workers that serve meanwhile keep their CPU. Only where the process
  // may return (the master checked).
  bool load_at_idle_priority = false;
};

// The command line of kiln-server in zygote mode (argv[0] = `binary`).
std::vector<std::string> ZygoteModeArgv(const std::string& binary, const ZygoteLaunch& launch);

// Runs /proc/self/exe in zygote mode with `zygote_end` as its fd kZygoteChannelFd, every signal
// unblocked and the environment inherited (so OpenMP's settings are the master's). Safe from a
// process with threads. Returns the new zygote's pid; the caller closes its copy of `zygote_end`
// and reaps the zygote.
absl::StatusOr<pid_t> SpawnZygoteProcess(const ZygoteLaunch& launch,
                                         const FrameChannel& zygote_end);

// kiln-server --zygote_mode: dies with its parent (the master), loads `launch`'s models as the
// master does, and runs RunZygote on fd kZygoteChannelFd. Returns (an exit code) only when
// loading fails, after sending LoadFailed.
int RunZygoteMode(const ZygoteLaunch& launch);

}  // namespace kiln

#endif  // KILN_SERVER_ZYGOTE_ZYGOTE_MODE_H_
