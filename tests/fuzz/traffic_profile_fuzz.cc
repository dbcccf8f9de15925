// libFuzzer target for the traffic files in a state directory (common/traffic_profile.h): every
// input is read both as <model>.traffic.pbtxt (LoadTrafficProfile) and as
// <model>.samples.safetensors (LoadTrafficSamples). Whatever the bytes, both must return; errors
// are InvalidArgument naming the file; an accepted profile holds each shape once with counts in
// range, and ShapesToReplay on it returns distinct shapes of the profile, most requested first,
// within its bounds; accepted samples hold tensors whose bytes match their dtype and shape, and a
// text sample's texts (TextSampleTexts) come back or fail with InvalidArgument.
// Run with scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "common/dtype.h"
#include "common/shape.h"
#include "common/tensor.h"
#include "common/traffic_profile.h"
#include "proto/traffic_profile.pb.h"
#include "tests/fuzz/fuzz_expect.h"

namespace kiln {
namespace {

using fuzz::Expect;

void ExpectFileError(const absl::Status& status, const std::string& path) {
  fuzz::ExpectError(status, absl::StatusCode::kInvalidArgument, "a bad file is InvalidArgument");
  Expect(absl::StartsWith(status.message(), path), "errors name the file");
}

void CheckProfile(const uint8_t* data, size_t size) {
  const std::string path = TrafficProfilePath(fuzz::ScratchDir(), "m");
  fuzz::WriteScratchFile(path, data, size);
  absl::StatusOr<TrafficProfile> profile = LoadTrafficProfile(path);
  fuzz::Note("LoadTrafficProfile", profile.status());
  if (!profile.ok()) return ExpectFileError(profile.status(), path);

  std::map<Shape, int64_t> requests;
  for (const ShapeCount& shape : profile->shapes()) {
    Expect(shape.batch_size() >= 1 && shape.sequence_length() >= 0 && shape.requests() >= 0,
           "shape counts in range");
    Expect(requests.emplace(Shape{shape.batch_size(), shape.sequence_length()}, shape.requests())
               .second,
           "each shape once");
  }
  Expect(profile->other_requests() >= 0, "other_requests >= 0");

  for (const int max_shapes : {0, 1, 3, kMaxShapesPerModel}) {
    for (const double min_share : {0.0, 0.05, 0.5}) {
      const std::vector<Shape> replay = ShapesToReplay(*profile, max_shapes, min_share);
      Expect(replay.size() <= static_cast<size_t>(max_shapes), "at most max_shapes");
      std::set<Shape> seen;
      for (size_t i = 0; i < replay.size(); ++i) {
        const auto it = requests.find(replay[i]);
        Expect(it != requests.end() && it->second > 0, "replayed shapes were requested");
        Expect(seen.insert(replay[i]).second, "each shape replayed once");
        if (i > 0) Expect(requests[replay[i - 1]] >= it->second, "most requested first");
      }
    }
  }
}

void CheckSamples(const uint8_t* data, size_t size) {
  const std::string path = TrafficSamplesPath(fuzz::ScratchDir(), "m");
  fuzz::WriteScratchFile(path, data, size);
  absl::StatusOr<std::vector<std::vector<Tensor>>> samples = LoadTrafficSamples(path);
  fuzz::Note("LoadTrafficSamples", samples.status());
  if (!samples.ok()) return ExpectFileError(samples.status(), path);
  for (const std::vector<Tensor>& sample : *samples) {
    Expect(!sample.empty(), "a sample has inputs");
    for (const Tensor& tensor : sample) {
      Expect(!tensor.name.empty(), "inputs are named");
      const std::optional<int64_t> elements = NumElements(tensor.shape);
      Expect(elements.has_value() &&
                 static_cast<uint64_t>(*elements) * DTypeSize(tensor.dtype) == tensor.bytes.size(),
             "bytes hold the shape");
    }
    absl::StatusOr<std::optional<std::vector<std::string>>> texts =
        TextSampleTexts(sample, sample.front().name);
    if (!texts.ok()) {
      fuzz::ExpectError(texts.status(), absl::StatusCode::kInvalidArgument, "bad text sample");
    } else if (texts->has_value()) {
      Expect(!(*texts)->empty(), "a text sample holds text");
    }
  }
}

}  // namespace
}  // namespace kiln

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::CheckProfile(data, size);
  kiln::CheckSamples(data, size);
  return 0;
}
