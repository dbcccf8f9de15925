#include "server/port_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_util.h"

namespace kiln {

absl::StatusOr<std::unique_ptr<PortLock>> PortLock::Acquire(const std::string& dir, int port) {
  const std::string path = absl::StrCat(dir, "/kiln-server-", port, ".lock");
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot open lock file ", path));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char holder[32] = {};
    const ssize_t n = pread(fd, holder, sizeof(holder) - 1, 0);
    close(fd);
    return absl::AlreadyExistsError(
        absl::StrCat("port ", port, " is taken by another kiln-server (pid ",
                     n > 0 ? absl::StripAsciiWhitespace(holder) : "unknown", ", lock ", path, ")"));
  }
  const std::string pid = absl::StrCat(getpid(), "\n");
  // Best effort: without the pid the lock still holds; a second server's message is poorer.
  if (ftruncate(fd, 0) == 0) (void)!pwrite(fd, pid.data(), pid.size(), 0);
  return std::unique_ptr<PortLock>(new PortLock(path, fd));
}

PortLock::~PortLock() { close(fd_); }

}  // namespace kiln
