// Reading safetensors files (https://github.com/huggingface/safetensors, "Format") over a
// read-only memory mapping, with every byte of the header validated before anything trusts it.
//
// Layout: 8 bytes little-endian u64 N, then N bytes of UTF-8 JSON (may be padded with trailing
// spaces), then the data section. The JSON maps tensor names to
// {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} (offsets relative to the data
// section) plus an optional "__metadata__" map of string to string. Tensors must cover the data
// section exactly: no holes, no overlaps, nothing past its end.
#ifndef KILN_COMMON_SAFETENSORS_H_
#define KILN_COMMON_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "common/dtype.h"

namespace kiln {

// Headers larger than this are refused (the reference implementation uses the same bound).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

struct SafetensorsOptions {
  // By default a tensor whose bytes are not aligned to its dtype size is accepted and reported
  // through SafetensorsTensor::aligned (the spec does not promise alignment; the backend copies
  // such a tensor instead of viewing it). With this set, it is an error naming the tensor.
  bool require_aligned = false;
};

// One validated tensor entry. `data` points into the parsed image (or mapping) and is valid for
// as long as that memory is.
struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offset in the data section
  uint64_t end = 0;    // one past the last byte, offset in the data section
  const uint8_t* data = nullptr;
  bool aligned = true;  // data is a multiple of DTypeSize(dtype)

  size_t nbytes() const { return static_cast<size_t>(end - begin); }
};

// The validated contents of one safetensors image. A plain value, immutable after parsing;
// safe to read from any number of threads. It does not own the bytes its tensors point to.
class SafetensorsIndex {
 public:
  // Tensors in the order of their data offsets.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  // nullptr when no tensor has that name.
  const SafetensorsTensor* Find(absl::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // 8 + N: where the data section starts in the image.
  uint64_t data_start() const { return data_start_; }

 private:
  friend absl::StatusOr<SafetensorsIndex> ParseSafetensors(const uint8_t*, size_t,
                                                           absl::string_view,
                                                           const SafetensorsOptions&);
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;  // name -> index in tensors_
  std::map<std::string, std::string> metadata_;
  uint64_t data_start_ = 0;
};

// Validates a whole safetensors image held in memory (`size` bytes at `image`). `source` names
// it in error messages (usually the file path). Never crashes or reads outside
// [image, image + size), whatever the bytes: every defect is an InvalidArgument naming what is
// wrong (and the tensor, where there is one).
absl::StatusOr<SafetensorsIndex> ParseSafetensors(const uint8_t* image, size_t size,
                                                  absl::string_view source,
                                                  const SafetensorsOptions& options = {});

// A safetensors file mapped read-only (PROT_READ, MAP_PRIVATE) and validated. Writing through
// a tensor pointer faults (SIGSEGV) instead of silently copying the page: shared weights stay
// shared. The mapping survives fork(), so a parent can map once and children share the pages.
//
// Ownership: owns the mapping; unmaps it on destruction, so everything that points into it
// (tensors rebound to it) must be destroyed first. Thread-safety: immutable after Open; all
// methods are const and safe from any thread.
class MappedSafetensors {
 public:
  static absl::StatusOr<std::unique_ptr<MappedSafetensors>> Open(
      const std::string& path, const SafetensorsOptions& options = {});
  ~MappedSafetensors();

  MappedSafetensors(const MappedSafetensors&) = delete;
  MappedSafetensors& operator=(const MappedSafetensors&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsIndex& index() const { return index_; }
  const uint8_t* data() const { return base_; }
  size_t size() const { return size_; }
  // True when [p, p + n) lies inside the mapping.
  bool Contains(const void* p, size_t n = 1) const;
  // madvise(MADV_WILLNEED) over the whole mapping: starts reading the pages in the background.
  void Prefetch() const;

 private:
  MappedSafetensors(std::string path, const uint8_t* base, size_t size, SafetensorsIndex index);

  std::string path_;
  const uint8_t* base_;
  size_t size_;
  SafetensorsIndex index_;
};

}  // namespace kiln

#endif  // KILN_COMMON_SAFETENSORS_H_
