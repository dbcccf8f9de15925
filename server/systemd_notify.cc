#include "server/systemd_notify.h"

#include <systemd/sd-daemon.h>

#include "glog/logging.h"

namespace kiln {

void NotifySystemd(const std::string& state) {
  const int sent = sd_notify(/*unset_environment=*/0, state.c_str());
  if (sent < 0) LOG(WARNING) << "sd_notify failed: " << strerror(-sent);
}

uint64_t SystemdWatchdogUsec() {
  uint64_t usec = 0;
  return sd_watchdog_enabled(/*unset_environment=*/0, &usec) > 0 ? usec : 0;
}

}  // namespace kiln
