#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/memory/memory.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/tensor.h"
#include "glog/logging.h"
#include "nlohmann/json.hpp"

namespace kiln {
namespace {

using json = nlohmann::json;

// The header length that starts every image: a little-endian u64.
constexpr size_t kLengthBytes = 8;
// Longest tensor name or JSON value quoted in an error message.
constexpr size_t kMaxQuotedBytes = 128;

constexpr absl::string_view kMetadataKey = "__metadata__";

// An InvalidArgument error whose message starts with the image's source.
template <typename... Args>
absl::Status Invalid(absl::string_view source, const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", args...));
}

// `s` as a JSON string literal (quotes and escapes, so a name with odd characters still reads
// well in a log line), cut after kMaxQuotedBytes without splitting a UTF-8 sequence.
std::string Quote(absl::string_view s) {
  bool cut = false;
  if (s.size() > kMaxQuotedBytes) {
    size_t n = kMaxQuotedBytes;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    s = s.substr(0, n);
    cut = true;
  }
  // The parser validated the UTF-8 of every string, so dump() cannot throw; `replace` keeps
  // that true even for a string cut by mistake.
  std::string quoted = json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
  return cut ? quoted + "..." : quoted;
}

// A short description of a JSON value for an error message: scalars as written, containers by
// their type (they may be huge).
std::string Describe(const json& value) {
  if (value.is_string()) return Quote(value.get_ref<const std::string&>());
  if (value.is_primitive()) return value.dump();
  return std::string("an ") + value.type_name();
}

// Error about one tensor entry: "<source>: tensor "<name>": <details>".
template <typename... Args>
absl::Status InvalidTensor(absl::string_view source, absl::string_view name, const Args&... args) {
  return Invalid(source, "tensor ", Quote(name), ": ", args...);
}

uint64_t ReadLittleEndian64(const uint8_t* p) {
  uint64_t value = 0;
  for (size_t i = 0; i < kLengthBytes; ++i) value |= static_cast<uint64_t>(p[i]) << (8 * i);
  return value;
}

// Checks the length prefix against the image and returns N, the header length.
absl::StatusOr<uint64_t> ReadHeaderLength(size_t size, const uint8_t* image,
                                          absl::string_view source) {
  if (size == 0) return Invalid(source, "file is empty (not a safetensors file)");
  if (size < kLengthBytes) {
    return Invalid(source, "file has only ", size,
                   " bytes, fewer than the 8-byte header length that starts a safetensors file");
  }
  const uint64_t n = ReadLittleEndian64(image);
  if (n == 0) return Invalid(source, "header length is 0 (the header must be a JSON object)");
  if (n > kMaxSafetensorsHeaderBytes) {
    return Invalid(source, "header length ", n, " exceeds the limit of ",
                   kMaxSafetensorsHeaderBytes, " bytes");
  }
  const uint64_t available = size - kLengthBytes;
  if (n > available) {
    return Invalid(source, "header claims ", n, " bytes but the file has only ", available,
                   " after the length");
  }
  return n;
}

// Parses the header JSON. nlohmann keeps the last of duplicate keys silently, which would hide
// a second tensor of the same name (or a second "dtype" in one entry), so the parser callback
// tracks the keys of every open object and any duplicate is an error.
absl::StatusOr<json> ParseHeaderJson(const char* begin, const char* end, absl::string_view source) {
  if (*begin != '{') {
    return Invalid(source, "header does not start with '{' (first byte is ",
                   static_cast<int>(static_cast<unsigned char>(*begin)), ")");
  }
  // nlohmann stops at a NUL byte as if the input ended there, which would let anything follow
  // it. Valid JSON never holds a raw NUL (inside strings it must be escaped), so refuse it.
  if (const void* nul = std::memchr(begin, '\0', static_cast<size_t>(end - begin))) {
    return Invalid(source, "header is not valid JSON: NUL byte at header offset ",
                   static_cast<const char*>(nul) - begin);
  }
  std::vector<std::set<std::string, std::less<>>> open_objects;
  std::optional<std::string> duplicate;
  bool duplicate_is_tensor_name = false;
  auto track_keys = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty() && parsed.is_string() &&
               !duplicate.has_value()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) {
        duplicate = key;
        duplicate_is_tensor_name = open_objects.size() == 1 && key != kMetadataKey;
      }
    }
    return true;
  };
  json root;
  try {
    root = json::parse(begin, end, track_keys, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    // what() quotes the token it stopped at, which may be a megabyte-long string: cut it.
    absl::string_view what = e.what();
    if (what.size() > 2 * kMaxQuotedBytes) what = what.substr(0, 2 * kMaxQuotedBytes);
    return Invalid(source, "header is not valid JSON: ", what,
                   what.size() < absl::string_view(e.what()).size() ? "..." : "");
  }
  if (duplicate.has_value()) {
    if (duplicate_is_tensor_name) {
      return Invalid(source, "header names tensor ", Quote(*duplicate), " more than once");
    }
    return Invalid(source, "header has duplicate key ", Quote(*duplicate), " inside an object");
  }
  if (!root.is_object()) {
    return Invalid(source, "header is ", Describe(root), ", not a JSON object");
  }
  return root;
}

absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(const json& value,
                                                                 absl::string_view source) {
  if (!value.is_object()) {
    return Invalid(source, "\"__metadata__\" is ", Describe(value), ", not an object of strings");
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      return Invalid(source, "\"__metadata__\" value of ", Quote(key), " is ", Describe(item),
                     ", not a string");
    }
    metadata.emplace(key, item.get_ref<const std::string&>());
  }
  return metadata;
}

// A JSON integer in [0, max]; std::nullopt for anything else (floats, negatives, bools, ...).
std::optional<uint64_t> NonNegativeInteger(const json& value, uint64_t max) {
  if (const auto* u = value.get_ptr<const json::number_unsigned_t*>()) {
    if (*u <= max) return static_cast<uint64_t>(*u);
    return std::nullopt;
  }
  if (const auto* i = value.get_ptr<const json::number_integer_t*>()) {
    if (*i >= 0 && static_cast<uint64_t>(*i) <= max) return static_cast<uint64_t>(*i);
  }
  return std::nullopt;
}

// Checks that an entry has exactly the keys "dtype", "shape" and "data_offsets".
absl::Status CheckEntryKeys(const std::string& name, const json& entry, absl::string_view source) {
  static constexpr absl::string_view kKeys[] = {"dtype", "shape", "data_offsets"};
  for (const auto& item : entry.items()) {
    if (std::find(std::begin(kKeys), std::end(kKeys), item.key()) == std::end(kKeys)) {
      return InvalidTensor(source, name, "unexpected key ", Quote(item.key()),
                           " (expected only \"dtype\", \"shape\" and \"data_offsets\")");
    }
  }
  for (absl::string_view key : kKeys) {
    if (!entry.contains(key)) return InvalidTensor(source, name, "missing key \"", key, "\"");
  }
  return absl::OkStatus();
}

absl::StatusOr<DType> ParseDType(const std::string& name, const json& value,
                                 absl::string_view source) {
  if (!value.is_string()) {
    return InvalidTensor(source, name, "dtype is ", Describe(value), ", not a string");
  }
  const std::string& spelling = value.get_ref<const std::string&>();
  std::optional<DType> dtype = DTypeFromName(spelling);
  if (!dtype.has_value()) return InvalidTensor(source, name, "unknown dtype ", Quote(spelling));
  return *dtype;
}

absl::StatusOr<std::vector<int64_t>> ParseShape(const std::string& name, const json& value,
                                                absl::string_view source) {
  if (!value.is_array()) {
    return InvalidTensor(source, name, "shape is ", Describe(value), ", not an array");
  }
  std::vector<int64_t> shape;
  shape.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    std::optional<uint64_t> dim =
        NonNegativeInteger(value[i], static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
    if (!dim.has_value()) {
      return InvalidTensor(source, name, "shape dimension ", i, " is ", Describe(value[i]),
                           ", not a non-negative integer");
    }
    shape.push_back(static_cast<int64_t>(*dim));
  }
  return shape;
}

absl::StatusOr<std::pair<uint64_t, uint64_t>> ParseOffsets(const std::string& name,
                                                           const json& value,
                                                           absl::string_view source) {
  if (!value.is_array() || value.size() != 2) {
    return InvalidTensor(source, name, "data_offsets is ", Describe(value),
                         ", not an array of 2 integers [begin, end]");
  }
  std::optional<uint64_t> begin =
      NonNegativeInteger(value[0], std::numeric_limits<uint64_t>::max());
  std::optional<uint64_t> end = NonNegativeInteger(value[1], std::numeric_limits<uint64_t>::max());
  if (!begin.has_value() || !end.has_value()) {
    return InvalidTensor(source, name, "data_offsets [", Describe(value[0]), ", ",
                         Describe(value[1]), "] are not both non-negative integers");
  }
  if (*begin > *end) {
    return InvalidTensor(source, name, "data_offsets [", *begin, ", ", *end,
                         "] begin after they end");
  }
  return std::make_pair(*begin, *end);
}

// Validates one tensor entry on its own (dtype, shape, offsets inside the data section, byte
// size); `data` and `aligned` are filled in later, once the entry is known to be sound.
absl::StatusOr<SafetensorsTensor> ParseTensorEntry(const std::string& name, const json& entry,
                                                   uint64_t data_size, absl::string_view source) {
  if (!entry.is_object()) {
    return InvalidTensor(source, name, "entry is ", Describe(entry), ", not an object");
  }
  RETURN_IF_ERROR(CheckEntryKeys(name, entry, source));

  SafetensorsTensor tensor;
  tensor.name = name;
  ASSIGN_OR_RETURN(tensor.dtype, ParseDType(name, entry["dtype"], source));
  ASSIGN_OR_RETURN(tensor.shape, ParseShape(name, entry["shape"], source));
  ASSIGN_OR_RETURN(std::tie(tensor.begin, tensor.end),
                   ParseOffsets(name, entry["data_offsets"], source));

  if (tensor.end > data_size) {
    return InvalidTensor(source, name, "data_offsets [", tensor.begin, ", ", tensor.end,
                         "] go past the end of the data section (", data_size, " bytes)");
  }
  std::optional<int64_t> elements = NumElements(tensor.shape);
  uint64_t nbytes = 0;
  if (!elements.has_value() ||
      __builtin_mul_overflow(static_cast<uint64_t>(*elements),
                             static_cast<uint64_t>(DTypeSize(tensor.dtype)), &nbytes)) {
    return InvalidTensor(source, name, "shape ", ShapeString(tensor.shape), " of dtype ",
                         DTypeName(tensor.dtype), " has too many elements (overflow)");
  }
  if (nbytes != tensor.end - tensor.begin) {
    return InvalidTensor(source, name, "shape ", ShapeString(tensor.shape), " of dtype ",
                         DTypeName(tensor.dtype), " needs ", nbytes, " bytes but data_offsets [",
                         tensor.begin, ", ", tensor.end, "] hold ", tensor.end - tensor.begin);
  }
  return tensor;
}

std::string Range(const SafetensorsTensor& tensor) {
  return absl::StrCat("[", tensor.begin, ", ", tensor.end, ")");
}

// Checks that `tensors`, sorted by (begin, end), tile [0, data_size) exactly. A zero-byte tensor
// is fine at any boundary between tensors, but not strictly inside another one.
absl::Status CheckCoverage(const std::vector<SafetensorsTensor>& tensors, uint64_t data_size,
                           absl::string_view source) {
  uint64_t covered = 0;  // [0, covered) is tiled by the tensors seen so far
  const SafetensorsTensor* previous = nullptr;
  for (const SafetensorsTensor& tensor : tensors) {
    if (tensor.begin < covered) {
      return Invalid(source, "tensors ", Quote(previous->name), " ", Range(*previous), " and ",
                     Quote(tensor.name), " ", Range(tensor), " overlap in the data section");
    }
    if (tensor.begin > covered) {
      return Invalid(source, "bytes [", covered, ", ", tensor.begin,
                     ") of the data section belong to no tensor (a hole before tensor ",
                     Quote(tensor.name), ")");
    }
    covered = tensor.end;
    previous = &tensor;
  }
  if (covered != data_size) {
    return Invalid(source, "bytes [", covered, ", ", data_size,
                   ") of the data section belong to no tensor (trailing bytes after the last "
                   "tensor)");
  }
  return absl::OkStatus();
}

}  // namespace

const SafetensorsTensor* SafetensorsIndex::Find(absl::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<SafetensorsIndex> ParseSafetensors(const uint8_t* image, size_t size,
                                                  absl::string_view source,
                                                  const SafetensorsOptions& options) {
  ASSIGN_OR_RETURN(const uint64_t header_length, ReadHeaderLength(size, image, source));
  const char* header = reinterpret_cast<const char*>(image + kLengthBytes);
  ASSIGN_OR_RETURN(json root, ParseHeaderJson(header, header + header_length, source));

  SafetensorsIndex index;
  index.data_start_ = kLengthBytes + header_length;
  const uint64_t data_size = size - index.data_start_;
  for (const auto& [name, entry] : root.items()) {
    if (name == kMetadataKey) {
      ASSIGN_OR_RETURN(index.metadata_, ParseMetadata(entry, source));
      continue;
    }
    ASSIGN_OR_RETURN(SafetensorsTensor tensor, ParseTensorEntry(name, entry, data_size, source));
    index.tensors_.push_back(std::move(tensor));
  }

  std::sort(index.tensors_.begin(), index.tensors_.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
            });
  RETURN_IF_ERROR(CheckCoverage(index.tensors_, data_size, source));

  const uint8_t* data_section = image + index.data_start_;
  for (size_t i = 0; i < index.tensors_.size(); ++i) {
    SafetensorsTensor& tensor = index.tensors_[i];
    tensor.data = data_section + tensor.begin;
    const size_t alignment = DTypeSize(tensor.dtype);
    tensor.aligned = reinterpret_cast<uintptr_t>(tensor.data) % alignment == 0;
    if (!tensor.aligned && options.require_aligned) {
      return InvalidTensor(source, tensor.name, "data at file offset ",
                           index.data_start_ + tensor.begin, " is not aligned to ", alignment,
                           " bytes for dtype ", DTypeName(tensor.dtype));
    }
    index.by_name_.emplace(tensor.name, i);
  }
  return index;
}

MappedSafetensors::MappedSafetensors(std::string path, const uint8_t* base, size_t size,
                                     SafetensorsIndex index)
    : path_(std::move(path)), base_(base), size_(size), index_(std::move(index)) {}

MappedSafetensors::~MappedSafetensors() { munmap(const_cast<uint8_t*>(base_), size_); }

absl::StatusOr<std::unique_ptr<MappedSafetensors>> MappedSafetensors::Open(
    const std::string& path, const SafetensorsOptions& options) {
  // O_NONBLOCK: opening a FIFO by mistake must not hang; it has no effect on regular files.
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat(path, ": cannot open"));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoStatus(err, absl::StrCat(path, ": cannot stat"));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return Invalid(path, S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file",
                   ", not a safetensors file");
  }
  if (st.st_size == 0) {
    close(fd);
    return Invalid(path, "file is empty (not a safetensors file)");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* base = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int mmap_errno = errno;
  close(fd);  // the mapping keeps the file alive
  if (base == MAP_FAILED) return ErrnoStatus(mmap_errno, absl::StrCat(path, ": cannot mmap"));

  const auto* bytes = static_cast<const uint8_t*>(base);
  absl::StatusOr<SafetensorsIndex> index = ParseSafetensors(bytes, size, path, options);
  if (!index.ok()) {
    munmap(base, size);
    return index.status();
  }
  return absl::WrapUnique(new MappedSafetensors(path, bytes, size, *std::move(index)));
}

bool MappedSafetensors::Contains(const void* p, size_t n) const {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  const uintptr_t base = reinterpret_cast<uintptr_t>(base_);
  if (address < base) return false;
  const uintptr_t offset = address - base;
  return offset <= size_ && n <= size_ - offset;
}

void MappedSafetensors::Prefetch() const {
  // Only advice: a failure costs page faults later, never correctness.
  if (madvise(const_cast<uint8_t*>(base_), size_, MADV_WILLNEED) != 0) {
    PLOG(WARNING) << path_ << ": madvise(MADV_WILLNEED) failed";
  }
}

}  // namespace kiln
