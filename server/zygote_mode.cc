#include "server/zygote_mode.h"

#include <spawn.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/model_config_loader.h"
#include "common/status_util.h"
#include "glog/logging.h"
#include "server/model_loading.h"
#include "server/traffic_replay.h"
#include "server/zygote.h"

extern char** environ;

namespace kiln {

std::vector<std::string> ZygoteModeArgv(const std::string& binary, const ZygoteLaunch& launch) {
  return {binary, "--zygote_mode", "--model_repository=" + launch.model_repository,
          std::string("--share_weights=") + (launch.share_weights ? "on" : "off"),
          "--state_dir=" + launch.state_dir};
}

absl::StatusOr<pid_t> SpawnZygoteProcess(const ZygoteLaunch& launch,
                                         const FrameChannel& zygote_end) {
  const std::vector<std::string> args = ZygoteModeArgv("/proc/self/exe", launch);
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // dup2 clears FD_CLOEXEC on the copy; every other fd of the master is close-on-exec.
  posix_spawn_file_actions_adddup2(&actions, zygote_end.fd(), kZygoteChannelFd);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  const int error = posix_spawn(&pid, argv[0], &actions, &attributes, argv.data(), environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) return ErrnoStatus(error, "starting a zygote (posix_spawn of /proc/self/exe)");
  return pid;
}

int RunZygoteMode(const ZygoteLaunch& launch) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 1;  // the master died before prctl took effect
  prctl(PR_SET_NAME, "kiln-zygote");
  absl::StatusOr<std::vector<ModelSpec>> specs = LoadModelRepository(launch.model_repository);
  if (!specs.ok()) {
    LOG(ERROR) << "zygote: model repository: " << specs.status();
    return 1;
  }
  absl::StatusOr<LoadedModels> models = LoadModels(
      *specs, launch.share_weights, [](const std::string& what) { VLOG(1) << "zygote: " << what; });
  if (!models.ok()) {
    LOG(ERROR) << "zygote: " << models.status();
    return 1;
  }
  std::map<std::string, ModelReplay> replay = LoadTrafficReplay(*specs, launch.state_dir);
  AttachSamples(replay, *models);
  LOG(INFO) << "zygote: started by fork+exec (pid " << getpid() << "), " << specs->size()
            << " models loaded";
  RunZygote(models->by_key, FrameChannel(kZygoteChannelFd));
}

}  // namespace kiln
