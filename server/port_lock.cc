#include "server/port_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace kiln {
namespace {

constexpr char kHowToFix[] =
    "; give kiln a directory of its own (for the lock: --lock_dir, systemd's RuntimeDirectory=, "
    "$XDG_RUNTIME_DIR; for the state: --state_dir, systemd's StateDirectory=)";

bool Set(const char* value) { return value != nullptr && *value != '\0'; }

std::string ModeText(mode_t mode) { return absl::StrFormat("%04o", mode & 07777); }

}  // namespace

std::string DefaultLockDir(const char* runtime_directory, const char* xdg_runtime_dir, uid_t euid) {
  if (Set(runtime_directory)) {
    return std::string(*absl::StrSplit(runtime_directory, ':').begin());
  }
  if (Set(xdg_runtime_dir)) return xdg_runtime_dir;
  return euid == 0 ? "/run/kiln" : absl::StrCat("/tmp/kiln-", euid);
}

bool IsOwnLockDir(const std::string& dir, uid_t euid) {
  return dir == DefaultLockDir(nullptr, nullptr, euid);
}

absl::Status EnsureOwnDirectory(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, absl::StrCat("cannot create kiln's directory ", dir));
  }
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("cannot stat ", dir));
  const uid_t euid = geteuid();
  if (!S_ISDIR(st.st_mode) || st.st_uid != euid || (st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("kiln's directory ", dir, " is not a private directory of this user (uid ",
                     euid, "): it is ",
                     S_ISLNK(st.st_mode)   ? "a symbolic link"
                     : S_ISDIR(st.st_mode) ? "a directory"
                                           : "not a directory",
                     " owned by uid ", st.st_uid, ", mode ", ModeText(st.st_mode),
                     "; someone else may have made it first", kHowToFix));
  }
  return absl::OkStatus();
}

absl::Status CheckPrivateDirectory(const std::string& dir, const std::string& what) {
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat(what, " ", dir));
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(what, " ", dir, " is not a directory"));
  }
  const uid_t euid = geteuid();
  if ((st.st_uid != euid && st.st_uid != 0) || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " ", dir, " (owner uid ", st.st_uid, ", mode ", ModeText(st.st_mode),
        ") lets other users create files in it, so a link planted there could make kiln "
        "overwrite another file",
        kHowToFix));
  }
  return absl::OkStatus();
}

absl::Status PrepareStateDirectory(const std::string& dir) {
  std::error_code error;
  const std::filesystem::path parent = std::filesystem::path(dir).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, error);
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, absl::StrCat("cannot create state directory ", dir));
  }
  return CheckPrivateDirectory(dir, "state directory");
}

absl::StatusOr<std::unique_ptr<PortLock>> PortLock::Acquire(const std::string& dir, int port) {
  // kiln's own default directory is made here; one the operator or the environment named must
  // exist already.
  if (IsOwnLockDir(dir, geteuid())) RETURN_IF_ERROR(EnsureOwnDirectory(dir));
  RETURN_IF_ERROR(CheckPrivateDirectory(dir, "lock directory"));
  const std::string path = absl::StrCat(dir, "/kiln-server-", port, ".lock");
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 && errno == ELOOP) {
    return absl::FailedPreconditionError(
        absl::StrCat("lock file ", path,
                     " is a symbolic link; kiln does not write through links (remove it "
                     "if it is not yours)"));
  }
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot open lock file ", path));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat(
        "lock file ", path, " is not a plain file of this user with a single name (owner uid ",
        st.st_uid, ", links ", st.st_nlink,
        "); kiln does not write to it (remove it if it is "
        "not yours)"));
  }
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
