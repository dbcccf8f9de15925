#include "server/zygote/zygote_mode.h"

#include <sched.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/idle_priority.h"
#include "common/model_config_loader.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "glog/logging.h"
#include "server/zygote/model_loading.h"
#include "server/zygote/traffic_replay.h"
#include "server/zygote/zygote.h"

extern char** environ;

namespace kiln {

std::vector<std::string> ZygoteModeArgv(const std::string& binary, const ZygoteLaunch& launch) {
  return {binary,
          "--zygote_mode",
          "--model_repository=" + launch.model_repository,
          std::string("--share_weights=") + (launch.share_weights ? "on" : "off"),
          "--state_dir=" + launch.state_dir,
          "--zygote_models=" + absl::StrJoin(launch.models, ","),
          std::string("--zygote_idle_load=") + (launch.load_at_idle_priority ? "true" : "false")};
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
  // The master's own signals stay blocked from the exec on: the new zygote loads LibTorch and its
  // models before it ignores them (SetForkingProcessSignals), and until then a HUP or TERM sent
  // to the whole unit (`systemctl kill` without --kill-whom=main) would kill it and a TTIN or
  // TTOU stop it. Blocked, they wait, and are discarded once ignored.
  sigset_t blocked;
  sigemptyset(&blocked);
  for (const int sig : {SIGTERM, SIGHUP, SIGTTIN, SIGTTOU}) sigaddset(&blocked, sig);
  posix_spawnattr_setsigmask(&attributes, &blocked);
  short flags = POSIX_SPAWN_SETSIGMASK;
  if (launch.load_at_idle_priority) {
    // From exec on: the dynamic loading of LibTorch before main costs a CPU-second too.
    sched_param param{};
    posix_spawnattr_setschedpolicy(&attributes, SCHED_IDLE);
    posix_spawnattr_setschedparam(&attributes, &param);
    flags |= POSIX_SPAWN_SETSCHEDULER;
  }
  posix_spawnattr_setflags(&attributes, flags);
  pid_t pid = 0;
  const int error = posix_spawn(&pid, argv[0], &actions, &attributes, argv.data(), environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) return ErrnoStatus(error, "starting a zygote (posix_spawn of /proc/self/exe)");
  return pid;
}

namespace {

// The specs of `launch.models` (every served version when empty) as the repository resolves them
// now.
// (Only the models named must load: another directory may be mid-edit.)
absl::StatusOr<std::vector<ModelSpec>> SpecsToLoad(const ZygoteLaunch& launch) {
  if (launch.models.empty()) return LoadModelRepository(launch.model_repository);
  ASSIGN_OR_RETURN(const auto repository, ScanRepository(launch.model_repository));
  std::vector<ModelSpec> specs;
  for (const std::string& key : launch.models) {
    const std::string name = key.substr(0, key.rfind(':'));
    auto versions = repository.find(name);
    if (versions == repository.end()) {
      return absl::NotFoundError(absl::StrCat("the repository has no model '", name, "' any more"));
    }
    if (!versions->second.ok()) return versions->second.status();
    auto found = std::find_if(versions->second->begin(), versions->second->end(),
                              [&key](const ModelSpec& spec) { return spec.key() == key; });
    if (found == versions->second->end()) {
      return absl::NotFoundError(absl::StrCat(key, " is no longer served by the repository"));
    }
    specs.push_back(*found);
  }
  return specs;
}

int LoadFailed(FrameChannel& master, const absl::Status& why) {
  LOG(ERROR) << "zygote: " << why.message();
  internal::ZygoteEvent event;
  event.mutable_load_failed()->set_message(std::string(why.message()));
  (void)master.Send(event);
  // The spawn commands that came meanwhile are read first: a socket closed with unread data
  // resets its peer, whose read would then lose the reason sent above.
  while (master.WaitReadable(0)) {
    internal::ZygoteCommand command;
    std::vector<int> fds;
    if (!master.Receive(&command, &fds).ok()) break;
    for (int fd : fds) close(fd);
  }
  return 1;
}

}  // namespace

int RunZygoteMode(const ZygoteLaunch& launch) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 1;  // the master died before prctl took effect
  prctl(PR_SET_NAME, "kiln-zygote");
  FrameChannel master(kZygoteChannelFd);
  // The watchdog of idle warming is the only other thread; Finish joins it before any fork.
  std::unique_ptr<IdleWarming> idle;
  if (launch.load_at_idle_priority) {
    // Started at SCHED_IDLE (SpawnZygoteProcess): back to normal for a moment, so that idle
    // warming's watchdog, which must not starve, starts at normal priority.
    if (absl::Status normal = ReturnAllThreadsFromIdle(); !normal.ok()) {
      LOG(WARNING) << "zygote: " << normal.message();
    }
    absl::StatusOr<std::unique_ptr<IdleWarming>> started = IdleWarming::Start({});
    if (started.ok()) {
      idle = *std::move(started);
    } else {
      LOG(WARNING) << "zygote: loading at normal priority: " << started.status().message();
    }
  }
  absl::StatusOr<std::vector<ModelSpec>> specs = SpecsToLoad(launch);
  if (!specs.ok()) return LoadFailed(master, Annotate(specs.status(), "model repository"));
  absl::StatusOr<LoadedModels> models =
      LoadModels(*specs, launch.share_weights,
                 [](const std::string&, const ModelSpec&, const std::string& what) {
                   VLOG(1) << "zygote: " << what;
                 });
  if (!models.ok()) return LoadFailed(master, models.status());
  if (idle != nullptr) {
    if (absl::StatusOr<IdleWarmingReport> report = idle->Finish(); !report.ok()) {
      return LoadFailed(master, Annotate(report.status(), "returning from idle priority"));
    }
    idle.reset();
  }
  std::map<std::string, ModelReplay> replay = LoadTrafficReplay(*specs, launch.state_dir);
  AttachSamples(replay, *models);
  LOG(INFO) << "zygote: started by fork+exec (pid " << getpid() << "), " << specs->size()
            << " model version(s) loaded";
  RunZygote(models->by_key, std::move(master));
}

}  // namespace kiln
