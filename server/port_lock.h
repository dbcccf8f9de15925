// A lock per public port, so two servers cannot silently share one (gRPC sets SO_REUSEPORT by
// default; kiln turns it off, and this lock makes the second server fail fast, before loading
// models, with a message naming the holder).
#ifndef KILN_SERVER_PORT_LOCK_H_
#define KILN_SERVER_PORT_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace kiln {

// Ownership: owns the lock file's fd; the lock is released when the object (or the process)
// goes. Thread-safety: immutable.
class PortLock {
 public:
  // flock()s <dir>/kiln-server-<port>.lock and writes our pid into it. AlreadyExists, naming the
  // pid of the holder, when another process holds it.
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
