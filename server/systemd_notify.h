// systemd's notify protocol (Type=notify): READY=1, STATUS=, EXTEND_TIMEOUT_USEC=, WATCHDOG=1,
// STOPPING=1, sent with libsystemd's sd_notify to $NOTIFY_SOCKET. Without NOTIFY_SOCKET every
// call is a no-op, so the server runs the same outside systemd.
#ifndef KILN_SERVER_SYSTEMD_NOTIFY_H_
#define KILN_SERVER_SYSTEMD_NOTIFY_H_

#include <cstdint>
#include <string>

namespace kiln {

// Sends `state` (newline-separated assignments, e.g. "READY=1\nSTATUS=serving"). Thread-safe.
void NotifySystemd(const std::string& state);

// The watchdog interval systemd asked for (WATCHDOG_USEC), or 0 when it asked for none.
uint64_t SystemdWatchdogUsec();

}  // namespace kiln

#endif  // KILN_SERVER_SYSTEMD_NOTIFY_H_
