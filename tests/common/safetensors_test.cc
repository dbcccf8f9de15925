#include "common/safetensors.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;

constexpr const char* kSource = "mem.safetensors";

// The 8-byte little-endian length prefix.
std::string LengthPrefix(uint64_t n) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return bytes;
}

// A safetensors image: length prefix, `header` padded with spaces so that the data section
// starts at a multiple of `align` (as the reference writer does; 1 = no padding), then `data`.
std::string MakeImage(std::string header, const std::string& data, size_t align = 8) {
  while ((8 + header.size()) % align != 0) header += ' ';
  return LengthPrefix(header.size()) + header + data;
}

// One header entry: "name":{"dtype":..,"shape":..,"data_offsets":[begin,end]}.
std::string Entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  uint64_t begin, uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) + "]}";
}

std::string Bytes(size_t n, char fill = 'x') { return std::string(n, fill); }

absl::StatusOr<SafetensorsIndex> Parse(const std::string& image,
                                       const SafetensorsOptions& options = {}) {
  return ParseSafetensors(reinterpret_cast<const uint8_t*>(image.data()), image.size(), kSource,
                          options);
}

// The message of the InvalidArgument error that parsing `image` must fail with.
std::string ErrorOf(const std::string& image, const SafetensorsOptions& options = {}) {
  absl::StatusOr<SafetensorsIndex> index = Parse(image, options);
  REQUIRE_FALSE(index.ok());
  CHECK(index.status().code() == absl::StatusCode::kInvalidArgument);
  std::string message(index.status().message());
  CHECK_THAT(message, Contains(std::string(kSource) + ": "));
  return message;
}

// The message of the error a header with these entries (and `data`) fails with.
std::string HeaderError(const std::string& entries, const std::string& data) {
  return ErrorOf(MakeImage("{" + entries + "}", data));
}

template <typename T>
std::string Raw(const std::vector<T>& values) {
  std::string bytes(values.size() * sizeof(T), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

// --- valid images ------------------------------------------------------------------------------

TEST_CASE("a valid file maps with every tensor, offset, pointer and metadata", "[safetensors]") {
  const std::vector<float> w = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f};
  const std::vector<int64_t> i = {-42};
  const std::vector<uint16_t> half = {0x3C00, 0x4000, 0xC000};
  // Data layout: i [0, 8), w [8, 32), half [32, 38), empty [38, 38), flag [38, 40).
  const std::string data = Raw(i) + Raw(w) + Raw(half) + std::string("\x01\x00", 2);
  // Entries deliberately not in offset order.
  const std::string header =
      "{" + Entry("flag", "BOOL", "[2]", 38, 40) + "," + Entry("w", "F32", "[2,3]", 8, 32) + "," +
      "\"__metadata__\":{\"format\":\"pt\",\"note\":\"hi\"}," +
      Entry("empty", "F32", "[0,4]", 38, 38) + "," + Entry("half", "F16", "[3]", 32, 38) + "," +
      Entry("i", "I64", "[1]", 0, 8) + "}";
  testing::TempDir dir;
  const std::string path = dir.WriteFile("model.safetensors", MakeImage(header, data));

  absl::StatusOr<std::unique_ptr<MappedSafetensors>> opened = MappedSafetensors::Open(path);
  REQUIRE(opened.ok());
  const MappedSafetensors& file = **opened;
  file.Prefetch();
  const SafetensorsIndex& index = file.index();
  CHECK(file.path() == path);
  CHECK(index.data_start() % 8 == 0);  // MakeImage pads the header
  CHECK(index.data_start() >= 8 + header.size());
  CHECK(index.data_start() < 8 + header.size() + 8);
  CHECK(file.size() == index.data_start() + data.size());

  REQUIRE(index.tensors().size() == 5);
  std::vector<std::string> order;
  for (const SafetensorsTensor& t : index.tensors()) {
    order.push_back(t.name);
    CHECK(t.data == file.data() + index.data_start() + t.begin);
    CHECK(file.Contains(t.data, t.nbytes()));
    CHECK(index.Find(t.name) == &t);
  }
  CHECK(order == std::vector<std::string>{"i", "w", "half", "empty", "flag"});

  const SafetensorsTensor* wt = index.Find("w");
  REQUIRE(wt != nullptr);
  CHECK(wt->dtype == DType::kFloat32);
  CHECK(wt->shape == std::vector<int64_t>{2, 3});
  CHECK(wt->begin == 8);
  CHECK(wt->end == 32);
  CHECK(wt->nbytes() == 24);
  CHECK(wt->aligned);
  std::vector<float> w_read(6);
  std::memcpy(w_read.data(), wt->data, 24);
  CHECK(w_read == w);

  const SafetensorsTensor* it = index.Find("i");
  REQUIRE(it != nullptr);
  CHECK(it->dtype == DType::kInt64);
  int64_t i_read = 0;
  std::memcpy(&i_read, it->data, 8);
  CHECK(i_read == -42);

  const SafetensorsTensor* ht = index.Find("half");
  REQUIRE(ht != nullptr);
  CHECK(ht->dtype == DType::kFloat16);
  CHECK(ht->shape == std::vector<int64_t>{3});
  CHECK(std::memcmp(ht->data, half.data(), 6) == 0);

  const SafetensorsTensor* et = index.Find("empty");
  REQUIRE(et != nullptr);
  CHECK(et->shape == std::vector<int64_t>{0, 4});
  CHECK(et->nbytes() == 0);

  const SafetensorsTensor* ft = index.Find("flag");
  REQUIRE(ft != nullptr);
  CHECK(ft->dtype == DType::kBool);
  CHECK(ft->data[0] == 1);
  CHECK(ft->data[1] == 0);

  CHECK(index.Find("missing") == nullptr);
  CHECK(index.Find("__metadata__") == nullptr);
  CHECK(index.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "hi"}});
}

TEST_CASE("a header padded with trailing spaces parses", "[safetensors]") {
  const std::string header = "{" + Entry("a", "F32", "[2]", 0, 8) + "}" + std::string(101, ' ');
  const std::string image = MakeImage(header, Bytes(8), /*align=*/1);
  absl::StatusOr<SafetensorsIndex> index = Parse(image);
  REQUIRE(index.ok());
  CHECK(index->data_start() == 8 + header.size());
  REQUIRE(index->tensors().size() == 1);
  CHECK(index->tensors()[0].data ==
        reinterpret_cast<const uint8_t*>(image.data()) + 8 + header.size());
}

TEST_CASE("an empty header object with no data is a valid empty file", "[safetensors]") {
  absl::StatusOr<SafetensorsIndex> index = Parse(MakeImage("{}", ""));
  REQUIRE(index.ok());
  CHECK(index->tensors().empty());
  CHECK(index->metadata().empty());
}

TEST_CASE("Contains checks ranges without overflowing", "[safetensors]") {
  testing::TempDir dir;
  const std::string path = dir.WriteFile(
      "a.safetensors", MakeImage("{" + Entry("a", "U8", "[4]", 0, 4) + "}", Bytes(4)));
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> file = MappedSafetensors::Open(path);
  REQUIRE(file.ok());
  const uint8_t* base = (*file)->data();
  const size_t size = (*file)->size();
  CHECK((*file)->Contains(base));
  CHECK((*file)->Contains(base, size));
  CHECK((*file)->Contains(base + size, 0));
  CHECK_FALSE((*file)->Contains(base, size + 1));
  CHECK_FALSE((*file)->Contains(base + size));
  CHECK_FALSE((*file)->Contains(base + 1, std::numeric_limits<size_t>::max()));
  CHECK_FALSE((*file)->Contains(nullptr));
  const auto* before = reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(base) - 1);
  CHECK_FALSE((*file)->Contains(before, 2));
}

// --- the length prefix -------------------------------------------------------------------------

TEST_CASE("an empty image is refused", "[safetensors]") {
  CHECK_THAT(ErrorOf(""), Contains("file is empty"));
}

TEST_CASE("a 7-byte image is refused", "[safetensors]") {
  const std::string message = ErrorOf(std::string(7, '\0'));
  CHECK_THAT(message, Contains("only 7 bytes"));
  CHECK_THAT(message, Contains("8-byte header length"));
}

TEST_CASE("a header length of 0 is refused", "[safetensors]") {
  CHECK_THAT(ErrorOf(LengthPrefix(0) + "{}"), Contains("header length is 0"));
}

TEST_CASE("a huge header length is refused before anything is read", "[safetensors]") {
  const std::string message = ErrorOf(LengthPrefix(kMaxSafetensorsHeaderBytes + 1) + "{}");
  CHECK_THAT(message, Contains("header length 100000001 exceeds the limit of 100000000"));
  CHECK_THAT(ErrorOf(LengthPrefix(std::numeric_limits<uint64_t>::max()) + "{}"),
             Contains("exceeds the limit"));
}

TEST_CASE("a header length longer than the file is refused", "[safetensors]") {
  CHECK_THAT(ErrorOf(LengthPrefix(100) + "{}        "),
             Contains("header claims 100 bytes but the file has only 10 after the length"));
}

// --- the JSON ----------------------------------------------------------------------------------

TEST_CASE("invalid JSON is refused", "[safetensors]") {
  CHECK_THAT(ErrorOf(MakeImage("{\"a\": ", "")), Contains("header is not valid JSON"));
  CHECK_THAT(ErrorOf(MakeImage("{} x", "")), Contains("header is not valid JSON"));
  // nlohmann would stop at the NUL and accept what comes before it.
  CHECK_THAT(ErrorOf(MakeImage(std::string("{}\0", 3), "", 1)),
             Contains("header is not valid JSON: NUL byte at header offset 2"));
  CHECK_THAT(ErrorOf(MakeImage(std::string("{}\0garbage", 10), "", 1)),
             Contains("header is not valid JSON"));
}

TEST_CASE("a JSON error quoting a huge token stays short", "[safetensors]") {
  const std::string message = ErrorOf(MakeImage("{\"" + std::string(100000, 'a'), ""));
  CHECK_THAT(message, Contains("header is not valid JSON"));
  CHECK(message.size() < 1000);
}

TEST_CASE("a header that is not a JSON object is refused", "[safetensors]") {
  CHECK_THAT(ErrorOf(MakeImage("[1, 2]", "")), Contains("header does not start with '{'"));
  CHECK_THAT(ErrorOf(MakeImage("\"{}\"", "")), Contains("header does not start with '{'"));
  CHECK_THAT(ErrorOf(MakeImage(" {}", "", 1)), Contains("header does not start with '{'"));
}

TEST_CASE("a duplicate tensor name cannot pass validation", "[safetensors]") {
  SECTION("two different ranges under one name") {
    // nlohmann keeps only the second entry; without the duplicate check, the first range would
    // at least show up as a hole.
    const std::string message = HeaderError(
        Entry("a", "F32", "[1]", 0, 4) + "," + Entry("a", "F32", "[1]", 4, 8), Bytes(8));
    CHECK_THAT(message, Contains("tensor \"a\" more than once"));
  }
  SECTION("the same entry twice") {
    // Here the coverage check alone would pass: only the duplicate check catches it.
    const std::string message = HeaderError(
        Entry("a", "F32", "[1]", 0, 4) + "," + Entry("a", "F32", "[1]", 0, 4), Bytes(4));
    CHECK_THAT(message, Contains("tensor \"a\" more than once"));
  }
  SECTION("a duplicate key inside an entry") {
    const std::string message = HeaderError(
        "\"a\":{\"dtype\":\"I32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}",
        Bytes(4));
    CHECK_THAT(message, Contains("duplicate key \"dtype\""));
  }
}

// --- entries -----------------------------------------------------------------------------------

TEST_CASE("an entry that is not an object is refused", "[safetensors]") {
  CHECK_THAT(HeaderError("\"a\":5", ""), Contains("tensor \"a\": entry is 5, not an object"));
}

TEST_CASE("an unknown dtype is refused", "[safetensors]") {
  CHECK_THAT(HeaderError(Entry("w", "F33", "[1]", 0, 4), Bytes(4)),
             Contains("tensor \"w\": unknown dtype \"F33\""));
  CHECK_THAT(HeaderError("\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}", Bytes(4)),
             Contains("tensor \"w\": dtype is 4, not a string"));
}

TEST_CASE("a missing key is refused", "[safetensors]") {
  CHECK_THAT(HeaderError("\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}", Bytes(4)),
             Contains("tensor \"w\": missing key \"dtype\""));
  CHECK_THAT(HeaderError("\"w\":{\"dtype\":\"F32\",\"shape\":[1]}", Bytes(4)),
             Contains("tensor \"w\": missing key \"data_offsets\""));
}

TEST_CASE("an extra key is refused", "[safetensors]") {
  CHECK_THAT(HeaderError("\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],"
                         "\"extra\":1}",
                         Bytes(4)),
             Contains("tensor \"w\": unexpected key \"extra\""));
}

TEST_CASE("a shape that does not match the byte size is refused", "[safetensors]") {
  const std::string message = HeaderError(Entry("w", "F32", "[2,3]", 0, 20), Bytes(20));
  CHECK_THAT(message, Contains("tensor \"w\""));
  CHECK_THAT(message, Contains("[2, 3]"));
  CHECK_THAT(message, Contains("F32"));
  CHECK_THAT(message, Contains("needs 24 bytes"));
  CHECK_THAT(message, Contains("hold 20"));
}

TEST_CASE("a shape whose element count overflows is refused", "[safetensors]") {
  CHECK_THAT(HeaderError(Entry("w", "F32", "[4294967296,4294967296,4]", 0, 4), Bytes(4)),
             Contains("too many elements"));
  // Elements fit in int64, bytes do not.
  CHECK_THAT(HeaderError(Entry("w", "F64", "[4611686018427387904]", 0, 8), Bytes(8)),
             Contains("too many elements"));
}

TEST_CASE("a negative dimension is refused", "[safetensors]") {
  CHECK_THAT(HeaderError(Entry("w", "F32", "[2,-2]", 0, 16), Bytes(16)),
             Contains("tensor \"w\": shape dimension 1 is -2, not a non-negative integer"));
}

TEST_CASE("a non-integer dimension is refused", "[safetensors]") {
  const std::string dim = GENERATE(as<std::string>{}, "2.0", "2.5", "1e1", "true", "\"2\"", "null",
                                   "[2]", "9223372036854775808", "18446744073709551616");
  INFO("dimension " << dim);
  CHECK_THAT(HeaderError(Entry("w", "U8", "[" + dim + "]", 0, 2), Bytes(2)),
             Contains("tensor \"w\": shape dimension 0 is"));
}

TEST_CASE("a shape that is not an array is refused", "[safetensors]") {
  CHECK_THAT(HeaderError(Entry("w", "U8", "2", 0, 2), Bytes(2)),
             Contains("tensor \"w\": shape is 2, not an array"));
}

TEST_CASE("data_offsets that are not two values are refused", "[safetensors]") {
  const std::string offsets = GENERATE(as<std::string>{}, "[0]", "[0,4,8]", "[]", "4", "{}");
  INFO("data_offsets " << offsets);
  CHECK_THAT(HeaderError("\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":" + offsets + "}",
                         Bytes(4)),
             Contains("tensor \"w\": data_offsets is ") &&
                 Contains("not an array of 2 integers [begin, end]"));
}

TEST_CASE("data_offsets that are not non-negative integers are refused", "[safetensors]") {
  const std::string offsets = GENERATE(as<std::string>{}, "[0,-4]", "[-1,4]", "[0,4.0]",
                                       "[\"0\",4]", "[0,true]", "[0,18446744073709551616]");
  INFO("data_offsets " << offsets);
  CHECK_THAT(
      HeaderError("\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":" + offsets + "}",
                  Bytes(4)),
      Contains("tensor \"w\": data_offsets [") && Contains("are not both non-negative integers"));
}

TEST_CASE("data_offsets whose begin is after their end are refused", "[safetensors]") {
  CHECK_THAT(HeaderError(Entry("w", "U8", "[4]", 8, 4), Bytes(8)),
             Contains("tensor \"w\": data_offsets [8, 4] begin after they end"));
}

TEST_CASE("offsets beyond the data section are refused", "[safetensors]") {
  CHECK_THAT(HeaderError(Entry("w", "F32", "[2]", 0, 8), Bytes(4)),
             Contains("tensor \"w\": data_offsets [0, 8] go past the end of the data section "
                      "(4 bytes)"));
}

TEST_CASE("truncated data is refused", "[safetensors]") {
  const std::string image = MakeImage("{" + Entry("w", "F32", "[2,3]", 0, 24) + "}", Bytes(24));
  CHECK_THAT(ErrorOf(image.substr(0, image.size() - 4)),
             Contains("go past the end of the data section (20 bytes)"));
}

// --- coverage of the data section --------------------------------------------------------------

TEST_CASE("overlapping tensors are refused", "[safetensors]") {
  const std::string message = HeaderError(
      Entry("a", "F32", "[2]", 0, 8) + "," + Entry("b", "F32", "[2]", 4, 12), Bytes(12));
  CHECK_THAT(message, Contains("\"a\" [0, 8) and \"b\" [4, 12) overlap"));
}

TEST_CASE("a zero-byte tensor strictly inside another is refused", "[safetensors]") {
  CHECK_THAT(
      HeaderError(Entry("a", "F32", "[2]", 0, 8) + "," + Entry("z", "F32", "[0]", 4, 4), Bytes(8)),
      Contains("overlap"));
}

TEST_CASE("a hole between tensors is refused", "[safetensors]") {
  const std::string message = HeaderError(
      Entry("a", "F32", "[1]", 0, 4) + "," + Entry("b", "F32", "[1]", 8, 12), Bytes(12));
  CHECK_THAT(message, Contains("bytes [4, 8) of the data section belong to no tensor"));
  CHECK_THAT(message, Contains("\"b\""));
}

TEST_CASE("a hole before the first tensor is refused", "[safetensors]") {
  CHECK_THAT(HeaderError(Entry("a", "F32", "[1]", 4, 8), Bytes(8)),
             Contains("bytes [0, 4) of the data section belong to no tensor"));
}

TEST_CASE("trailing bytes after the last tensor are refused", "[safetensors]") {
  const std::string message = HeaderError(Entry("a", "F32", "[1]", 0, 4), Bytes(8));
  CHECK_THAT(message, Contains("bytes [4, 8)"));
  CHECK_THAT(message, Contains("trailing bytes"));
  CHECK_THAT(ErrorOf(MakeImage("{}", Bytes(3))), Contains("bytes [0, 3)"));
}

TEST_CASE("zero-byte tensors at boundaries are fine", "[safetensors]") {
  absl::StatusOr<SafetensorsIndex> index = Parse(
      MakeImage("{" + Entry("z0", "F32", "[0]", 0, 0) + "," + Entry("a", "F32", "[1]", 0, 4) + "," +
                    Entry("z1", "I64", "[3,0]", 4, 4) + "," + Entry("z2", "U8", "[0]", 4, 4) + "}",
                Bytes(4)));
  REQUIRE(index.ok());
  REQUIRE(index->tensors().size() == 4);
  CHECK(index->tensors()[0].name == "z0");
  CHECK(index->tensors()[1].name == "a");
}

// --- metadata ----------------------------------------------------------------------------------

TEST_CASE("bad __metadata__ is refused", "[safetensors]") {
  CHECK_THAT(HeaderError("\"__metadata__\":{\"k\":1}", ""),
             Contains("\"__metadata__\" value of \"k\" is 1, not a string"));
  CHECK_THAT(HeaderError("\"__metadata__\":[\"k\"]", ""),
             Contains("\"__metadata__\" is an array, not an object of strings"));
  CHECK_THAT(HeaderError("\"__metadata__\":{\"k\":{\"x\":\"y\"}}", ""),
             Contains("value of \"k\" is an object"));
}

// --- alignment ---------------------------------------------------------------------------------

TEST_CASE("a misaligned tensor is reported, and refused only when alignment is required",
          "[safetensors]") {
  // The header is padded so the data section starts at a multiple of 8 of the page-aligned
  // mapping; "b" then sits at an odd address.
  const std::string image =
      MakeImage("{" + Entry("a", "U8", "[1]", 0, 1) + "," + Entry("b", "F32", "[1]", 1, 5) + "," +
                    Entry("c", "U8", "[3]", 5, 8) + "}",
                Bytes(8));
  testing::TempDir dir;
  const std::string path = dir.WriteFile("m.safetensors", image);

  absl::StatusOr<std::unique_ptr<MappedSafetensors>> lenient = MappedSafetensors::Open(path);
  REQUIRE(lenient.ok());
  const SafetensorsTensor* b = (*lenient)->index().Find("b");
  REQUIRE(b != nullptr);
  CHECK_FALSE(b->aligned);
  CHECK((*lenient)->index().Find("a")->aligned);
  CHECK((*lenient)->index().Find("c")->aligned);

  SafetensorsOptions strict;
  strict.require_aligned = true;
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> refused =
      MappedSafetensors::Open(path, strict);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == absl::StatusCode::kInvalidArgument);
  const std::string message(refused.status().message());
  CHECK_THAT(message, Contains(path + ": tensor \"b\""));
  CHECK_THAT(message, Contains("not aligned to 4 bytes"));
}

// --- MappedSafetensors::Open -------------------------------------------------------------------

TEST_CASE("Open refuses an empty file", "[safetensors]") {
  testing::TempDir dir;
  const std::string path = dir.WriteFile("empty.safetensors", "");
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> file = MappedSafetensors::Open(path);
  REQUIRE_FALSE(file.ok());
  CHECK(file.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(file.status().message()), Contains(path + ": file is empty"));
}

TEST_CASE("Open refuses a directory", "[safetensors]") {
  testing::TempDir dir;
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> file = MappedSafetensors::Open(dir.path());
  REQUIRE_FALSE(file.ok());
  CHECK(file.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(file.status().message()), Contains(dir.path() + ": is a directory"));
}

TEST_CASE("Open reports a nonexistent path", "[safetensors]") {
  testing::TempDir dir;
  const std::string path = dir.path() + "/missing.safetensors";
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> file = MappedSafetensors::Open(path);
  REQUIRE_FALSE(file.ok());
  CHECK(file.status().code() == absl::StatusCode::kNotFound);
  const std::string message(file.status().message());
  CHECK_THAT(message, Contains(path + ": cannot open"));
  CHECK_THAT(message, Contains("No such file or directory"));
}

TEST_CASE("Open prefixes validation errors with the path", "[safetensors]") {
  testing::TempDir dir;
  const std::string path = dir.WriteFile(
      "bad.safetensors", MakeImage("{" + Entry("w", "F32", "[2]", 0, 8) + "}", Bytes(4)));
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> file = MappedSafetensors::Open(path);
  REQUIRE_FALSE(file.ok());
  CHECK(file.status().code() == absl::StatusCode::kInvalidArgument);
  const std::string message(file.status().message());
  CHECK(message.rfind(path + ": tensor \"w\"", 0) == 0);
}

TEST_CASE("the mapping is read-only: a write through a tensor pointer faults", "[safetensors]") {
  testing::TempDir dir;
  const std::string path = dir.WriteFile(
      "ro.safetensors", MakeImage("{" + Entry("w", "F32", "[2]", 0, 8) + "}", Bytes(8)));
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> file = MappedSafetensors::Open(path);
  REQUIRE(file.ok());
  const SafetensorsTensor* w = (*file)->index().Find("w");
  REQUIRE(w != nullptr);

  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    signal(SIGSEGV, SIG_DFL);  // not Catch's handler, which would report a failure
    signal(SIGBUS, SIG_DFL);
    const struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    volatile uint8_t* p = const_cast<volatile uint8_t*>(w->data);
    *p = 1;
    _exit(0);  // reached only if the write went through
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGSEGV);
  CHECK(w->data[0] == 'x');  // and the parent's view is untouched
}

}  // namespace
}  // namespace kiln
