#include "common/shared_arena.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_util.h"

namespace kiln {
namespace {

// memfd_create refuses names over 249 bytes (NAME_MAX less the "memfd:" prefix).
constexpr size_t kMaxMemfdName = 249;

}  // namespace

absl::StatusOr<std::unique_ptr<SharedArena>> SharedArena::Create(absl::string_view name,
                                                                  size_t bytes) {
  std::string memfd_name = absl::StrCat("kiln-arena-", name);
  if (memfd_name.size() > kMaxMemfdName) memfd_name.resize(kMaxMemfdName);
  const std::string what = absl::StrCat("SharedArena::Create(", memfd_name, ", ", bytes, ")");
  if (bytes == 0) return absl::InvalidArgumentError(absl::StrCat(what, ": size must be > 0"));
  const long page_size = ::sysconf(_SC_PAGESIZE);
  const size_t page = page_size > 0 ? static_cast<size_t>(page_size) : 4096;
  if (bytes > std::numeric_limits<size_t>::max() - (page - 1) ||
      bytes > static_cast<size_t>(std::numeric_limits<off_t>::max()) - (page - 1)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": size too large"));
  }
  const size_t size = (bytes + page - 1) / page * page;

  const int fd = ::memfd_create(memfd_name.c_str(), MFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat(what, ": memfd_create"));
  int rc;
  do {
    rc = ::ftruncate(fd, static_cast<off_t>(size));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus(err, absl::StrCat(what, ": ftruncate to ", size, " bytes"));
  }
  void* data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (data == MAP_FAILED) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus(err, absl::StrCat(what, ": mmap of ", size, " bytes"));
  }
  return std::unique_ptr<SharedArena>(new SharedArena(fd, static_cast<uint8_t*>(data), size));
}

absl::StatusOr<std::unique_ptr<SharedArena>> SharedArena::Adopt(int fd) {
  const std::string what = absl::StrCat("SharedArena::Adopt(fd ", fd, ")");
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": invalid fd"));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus(err, absl::StrCat(what, ": fstat"));
  }
  if (st.st_size <= 0) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(what, ": the arena is empty (size ",
                                                   st.st_size, ")"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (data == MAP_FAILED) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus(err, absl::StrCat(what, ": mmap of ", size, " bytes"));
  }
  return std::unique_ptr<SharedArena>(new SharedArena(fd, static_cast<uint8_t*>(data), size));
}

SharedArena::~SharedArena() {
  ::munmap(data_, size_);
  ::close(fd_);
}

bool SharedArena::Fits(uint64_t offset, uint64_t n) const {
  const uint64_t size = size_;
  return offset <= size && n <= size - offset;
}

uint64_t SharedArena::Align(uint64_t offset) {
  if (offset > std::numeric_limits<uint64_t>::max() - (kArenaAlignment - 1)) {
    return std::numeric_limits<uint64_t>::max();
  }
  return (offset + kArenaAlignment - 1) & ~(kArenaAlignment - 1);
}

}  // namespace kiln
