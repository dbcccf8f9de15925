// A lock per public port, so two servers cannot silently share one (gRPC sets SO_REUSEPORT by
// default; kiln turns it off, and this lock makes the second server fail fast, before loading
// models, with a message naming the holder).
//
// The lock file is written (truncated, then our pid), so where it lives must be a directory no
// other user can plant a link in: a symbolic or hard link there to a file kiln can write would
// otherwise have kiln overwrite that file (with kiln running as root, any file). The directory is
// checked before every use, and the file is opened without following links and checked to be a
// plain file of ours with no other name.
#ifndef KILN_SERVER_PORT_LOCK_H_
#define KILN_SERVER_PORT_LOCK_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln {

// Where the lock goes without --lock_dir: the first entry of `runtime_directory`
// ($RUNTIME_DIRECTORY, ':'-separated, set by systemd's RuntimeDirectory=), else
// `xdg_runtime_dir` ($XDG_RUNTIME_DIR), else a directory of kiln's own: /run/kiln for root,
// /tmp/kiln-<euid> for another user (EnsureOwnDirectory makes it). Null or empty variables are
// unset.
std::string DefaultLockDir(const char* runtime_directory, const char* xdg_runtime_dir, uid_t euid);

// True when `dir` is a directory DefaultLockDir names as kiln's own (not one the environment
// gave), i.e. one kiln creates.
bool IsOwnLockDir(const std::string& dir, uid_t euid);

// kiln's own directory `dir`: made 0700 when missing; then it must be a real directory (not a
// symbolic link), owned by this user, with no access for group or others. FailedPrecondition
// naming what is wrong (someone else made it first, say) otherwise.
absl::Status EnsureOwnDirectory(const std::string& dir);

// A directory no other user can create entries in: a directory (links followed: the path is the
// operator's), owned by this user or root, not writable by group or others. FailedPrecondition
// naming it as `what` ("lock directory", "state directory"), with its owner and mode, otherwise.
absl::Status CheckPrivateDirectory(const std::string& dir, const std::string& what);

// --state_dir: made (the last component 0700) when missing, then CheckPrivateDirectory'd.
absl::Status PrepareStateDirectory(const std::string& dir);

// Ownership: owns the lock file's fd; the lock is released when the object (or the process)
// goes. Thread-safety: immutable.
class PortLock {
 public:
  // Makes `dir` when it is kiln's own (IsOwnLockDir; EnsureOwnDirectory), checks it
  // (CheckPrivateDirectory), then flock()s <dir>/kiln-server-<port>.lock, opened with
  // O_NOFOLLOW and required to be a regular file owned by this user with one link, and writes our
  // pid into it. AlreadyExists, naming the pid of the holder, when another process holds it;
  // FailedPrecondition when the directory or the file is not safe to write.
  static absl::StatusOr<std::unique_ptr<PortLock>> Acquire(const std::string& dir, int port);
  ~PortLock();

  PortLock(const PortLock&) = delete;
  PortLock& operator=(const PortLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  PortLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

}  // namespace kiln

#endif  // KILN_SERVER_PORT_LOCK_H_
