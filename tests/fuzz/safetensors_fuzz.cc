// libFuzzer target for the safetensors reader: whatever the bytes, ParseSafetensors must return
// (no crash, no read outside the image under ASan, no UB under UBSan), and an image it accepts
// must satisfy every promise of the index. Run with scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "common/dtype.h"
#include "common/safetensors.h"
#include "common/tensor.h"

namespace {

// Aborts (a crash libFuzzer reports, with the input saved) when an invariant does not hold.
void Expect(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "safetensors_fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

void CheckIndex(const kiln::SafetensorsIndex& index, const uint8_t* image, size_t size,
                bool require_aligned) {
  Expect(index.data_start() >= 9 && index.data_start() <= size, "data_start inside the image");
  const uint64_t data_size = size - index.data_start();
  uint64_t covered = 0;
  unsigned checksum = 0;
  for (const kiln::SafetensorsTensor& tensor : index.tensors()) {
    Expect(tensor.begin == covered, "tensors sorted and contiguous");
    Expect(tensor.begin <= tensor.end && tensor.end <= data_size, "offsets in the data section");
    covered = tensor.end;
    Expect(tensor.data == image + index.data_start() + tensor.begin, "data pointer");
    std::optional<int64_t> elements = kiln::NumElements(tensor.shape);
    Expect(elements.has_value(), "element count");
    Expect(static_cast<uint64_t>(*elements) * kiln::DTypeSize(tensor.dtype) == tensor.nbytes(),
           "byte size");
    Expect(!require_aligned || tensor.aligned, "alignment required");
    Expect(index.Find(tensor.name) == &tensor, "Find by name");
    // Touch every byte so that ASan sees any pointer outside the image.
    for (size_t i = 0; i < tensor.nbytes(); ++i) checksum += tensor.data[i];
  }
  Expect(covered == data_size, "tensors cover the data section");
  // Keep the reads from being optimised away.
  volatile unsigned sink = checksum;
  (void)sink;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (bool require_aligned : {false, true}) {
    kiln::SafetensorsOptions options;
    options.require_aligned = require_aligned;
    absl::StatusOr<kiln::SafetensorsIndex> index =
        kiln::ParseSafetensors(data, size, "fuzz", options);
    if (index.ok()) {
      CheckIndex(*index, data, size, require_aligned);
    } else {
      Expect(index.status().code() == absl::StatusCode::kInvalidArgument,
             "errors are InvalidArgument");
      Expect(absl::StartsWith(index.status().message(), "fuzz: ") &&
                 index.status().message().size() > 6,
             "errors name the source and say what is wrong");
    }
  }
  return 0;
}
