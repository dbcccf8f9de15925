// A per-worker shared-memory region for tensor bytes.
//
// The master creates it (memfd_create + ftruncate + mmap MAP_SHARED) and passes its memfd to the
// worker beside a frame (common/frame_channel.h); the worker adopts the fd and maps the same
// pages. Frames then carry offsets into the arena instead of tensor bytes. A child forked after
// Create shares the mapping too (MAP_SHARED survives fork).
#ifndef KILN_COMMON_SHARED_ARENA_H_
#define KILN_COMMON_SHARED_ARENA_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln {

// Where a tensor may start in an arena: offsets are multiples of this (a cache line, and enough
// for every dtype and for SIMD loads).
inline constexpr uint64_t kArenaAlignment = 64;

// Ownership: owns its mapping and its memfd (both released on destruction); neither copyable
// nor movable (held through std::unique_ptr). Pointers from data() are valid until destruction.
// Thread-safety: none of its own; the master and the worker take turns by protocol (the master
// writes inputs, the worker reads them and writes outputs, the master reads outputs), never
// both at once. The accessors and Fits only read members fixed at construction.
// Both ends map it with MAP_POPULATE, so the first request pays no page faults on the arena.
class SharedArena {
 public:
  // A new arena of `bytes` (> 0), rounded up to the page size, zero-filled, backed by
  // memfd_create("kiln-arena-<name>", MFD_CLOEXEC) (the name shows in /proc/PID/fd and maps;
  // a long one is cut to what memfd_create accepts).
  // Errors: bytes == 0 or too large to round -> kInvalidArgument; a failed system call -> its
  // errno's code, with the call and its strerror text.
  static absl::StatusOr<std::unique_ptr<SharedArena>> Create(absl::string_view name, size_t bytes);

  // Maps an arena some other process created: takes ownership of `fd` (closed here on error
  // too); the size comes from fstat. Errors: an fd that is negative, empty (size 0) or cannot be
  // stat'ed or mapped read-write shared.
  static absl::StatusOr<std::unique_ptr<SharedArena>> Adopt(int fd);

  SharedArena(const SharedArena&) = delete;
  SharedArena& operator=(const SharedArena&) = delete;
  ~SharedArena();

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // The memfd (still owned by the arena): pass it beside a frame; the kernel duplicates it.
  int fd() const { return fd_; }

  // True when [offset, offset + n) lies inside the arena, without overflow for any inputs. An
  // empty range fits anywhere up to and including size().
  bool Fits(uint64_t offset, uint64_t n) const;

  // `offset` rounded up to kArenaAlignment: where a tensor may start. An offset so close to
  // UINT64_MAX that rounding would overflow yields UINT64_MAX, which no arena Fits.
  static uint64_t Align(uint64_t offset);

 private:
  SharedArena(int fd, uint8_t* data, size_t size) : fd_(fd), data_(data), size_(size) {}

  const int fd_;
  uint8_t* const data_;
  const size_t size_;
};

}  // namespace kiln

#endif  // KILN_COMMON_SHARED_ARENA_H_
