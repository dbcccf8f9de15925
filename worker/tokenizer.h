// SentencePiece tokenization for text models. SentencePiece lives in a tiny shim library,
// libkiln_spm_shim.so (worker/sentencepiece_shim.h), that this code dlopen()s with
// RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND: Debian's libsentencepiece carries a private protobuf
// that must never meet the libprotobuf.so.32 of LibTorch and gRPC (docs/ARCHITECTURE.md, "Folder
// map and dependencies"). Nothing here links sentencepiece, and no sentencepiece header is included
// outside the shim.
#ifndef KILN_WORKER_TOKENIZER_H_
#define KILN_WORKER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/sentencepiece_shim.h"

namespace kiln {

// The shim's file name, as the build writes it next to kiln-server.
inline constexpr char kSpmShimFileName[] = "libkiln_spm_shim.so";

// Where the shim is looked for, in order: only $KILN_SPM_SHIM when it is set and not empty (an
// explicit choice is never second-guessed); otherwise <directory of /proc/self/exe>/
// libkiln_spm_shim.so, then the path the build wrote it to (KILN_SPM_SHIM_DEFAULT), without
// duplicates.
std::vector<std::string> SpmShimCandidates();

// The shim's C API, resolved with dlsym. Opaque outside tokenizer.cc.
struct SpmShim;

// dlopen()s each candidate in turn (RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND) until one loads,
// exports every function of the API and has this build's KILN_SPM_ABI_VERSION. Otherwise
// FailedPrecondition naming every path tried with why it failed (dlerror() or the missing
// symbol). The shim is never unloaded: the result lives as long as the process. Tokenizer::Load
// calls this once per process; it is exposed for tests. Starts no thread.
absl::StatusOr<const SpmShim*> OpenSpmShim(const std::vector<std::string>& candidates);

// A loaded SentencePiece model.
//
// Ownership: owns its model inside the shim (freed on destruction); the shim itself is loaded
// once per process (on the first successful Load) and never unloaded. Thread-safety: Load may be
// called from any thread; Encode and vocab_size are const and safe to call concurrently
// (SentencePieceProcessor::Encode is const). Loading starts no thread and runs no OpenMP region,
// so the master loads tokenizers before fork(), and forked workers use them as they are.
class Tokenizer {
 public:
  // Texts with more ids than this are encoded a second time into a buffer of the exact size.
  static constexpr size_t kInitialIdCapacity = 256;

  // Loads the shim (first call only; see SpmShimCandidates) and the SentencePiece model file at
  // `model_path`. Errors name the model file, or every shim path tried.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_path);
  ~Tokenizer();

  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of the UTF-8 `text`, all of them: the ids `spm_encode --output_format=id` prints,
  // with no truncation and no padding (the caller does both). Empty text gives no ids.
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const;

  // Pieces in the vocabulary: every id is in [0, vocab_size()).
  int vocab_size() const { return vocab_size_; }
  const std::string& model_path() const { return model_path_; }

 private:
  Tokenizer(const SpmShim* shim, KilnSpmModel* model, std::string model_path, int vocab_size);

  const SpmShim* shim_;  // not owned; lives as long as the process
  KilnSpmModel* model_;  // owned; released through shim_
  std::string model_path_;
  int vocab_size_;
};

}  // namespace kiln

#endif  // KILN_WORKER_TOKENIZER_H_
