// Deterministic English sample text: what warmup, the readiness check and kiln-bench send to a
// text model when they have no real text.
#ifndef KILN_COMMON_SAMPLE_TEXT_H_
#define KILN_COMMON_SAMPLE_TEXT_H_

#include <cstdint>
#include <string>

namespace kiln {

// A fixed passage's words repeated up to `words` words (sub-word tokenizers make about 1-1.5
// tokens of each); the same on every call, so every worker and every start sends the same text.
std::string SampleText(int32_t words);

}  // namespace kiln

#endif  // KILN_COMMON_SAMPLE_TEXT_H_
