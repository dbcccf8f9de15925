// What the libFuzzer targets share: an invariant check that crashes (so libFuzzer saves the
// input), checks of what an error carries, and a scratch directory for the readers that take a
// path.
#ifndef KILN_TESTS_FUZZ_FUZZ_EXPECT_H_
#define KILN_TESTS_FUZZ_FUZZ_EXPECT_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"

namespace kiln::fuzz {

// Aborts (a crash libFuzzer reports, with the input saved) when an invariant does not hold.
inline void Expect(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

// An error of `code` that says something.
inline void ExpectError(const absl::Status& status, absl::StatusCode code, const char* what) {
  if (status.code() != code || status.message().empty()) {
    std::fprintf(stderr, "fuzz: unexpected error: %s\n", status.ToString().c_str());
  }
  Expect(status.code() == code, what);
  Expect(!status.message().empty(), "an error says what is wrong");
}

// With KILN_FUZZ_VERBOSE set, prints what one reader made of the input (to see what a seed
// exercises: tests/fuzz/make_corpus.sh); otherwise nothing.
inline void Note(const char* reader, const absl::Status& status) {
  static const bool verbose = std::getenv("KILN_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "fuzz: %s: %s\n", reader, status.ToString().c_str());
}

// A directory of this process's own (mkdtemp under $TMPDIR, else /tmp), created on first use and
// removed when the process exits normally.
const std::string& ScratchDir();

// Replaces `path` with `size` bytes from `data`; aborts when it cannot.
void WriteScratchFile(const std::string& path, const uint8_t* data, size_t size);

}  // namespace kiln::fuzz

#endif  // KILN_TESTS_FUZZ_FUZZ_EXPECT_H_
