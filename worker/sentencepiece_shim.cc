// libkiln_spm_shim.so: SentencePiece behind the C API of sentencepiece_shim.h.
//
// This is the only translation unit that includes sentencepiece_processor.h. It must not include
// Abseil either: that header defines absl::string_view as std::string_view, which clashes with
// Debian's Abseil. Every exported function catches all exceptions.
#include "worker/sentencepiece_shim.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct KilnSpmModel {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

constexpr int kOk = 0;
constexpr int kUnknown = static_cast<int>(sentencepiece::util::StatusCode::kUnknown);
constexpr int kInvalidArgument =
    static_cast<int>(sentencepiece::util::StatusCode::kInvalidArgument);
constexpr int kResourceExhausted =
    static_cast<int>(sentencepiece::util::StatusCode::kResourceExhausted);

// Copies `message` into error[0 .. error_size), truncated and NUL-terminated.
void SetError(const char* message, char* error, size_t error_size) {
  if (error == nullptr || error_size == 0) return;
  const size_t n = std::min(std::strlen(message), error_size - 1);
  std::memcpy(error, message, n);
  error[n] = '\0';
}

int Fail(int code, const char* message, char* error, size_t error_size) {
  SetError(message, error, error_size);
  return code;
}

// The code and message of the exception being handled (call inside a catch block only).
int FailWithCurrentException(char* error, size_t error_size) {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return Fail(kResourceExhausted, "sentencepiece: out of memory", error, error_size);
  } catch (const std::exception& e) {
    const std::string message = std::string("sentencepiece threw: ") + e.what();
    return Fail(kUnknown, message.c_str(), error, error_size);
  } catch (...) {
    return Fail(kUnknown, "sentencepiece threw an unknown exception", error, error_size);
  }
}

}  // namespace

extern "C" {

int kiln_spm_abi_version(void) { return KILN_SPM_ABI_VERSION; }

KilnSpmModel* kiln_spm_load(const char* path, int* code, char* error, size_t error_size) {
  int result = kOk;
  KilnSpmModel* loaded = nullptr;
  try {
    if (path == nullptr) {
      result = Fail(kInvalidArgument, "no model path", error, error_size);
    } else {
      auto model = std::make_unique<KilnSpmModel>();
      const sentencepiece::util::Status status = model->processor.Load(path);
      if (status.ok()) {
        loaded = model.release();
      } else {
        result =
            Fail(static_cast<int>(status.code()), status.ToString().c_str(), error, error_size);
      }
    }
  } catch (...) {
    result = FailWithCurrentException(error, error_size);
  }
  if (code != nullptr) *code = result;
  return loaded;
}

int kiln_spm_encode(const KilnSpmModel* model, const char* text, size_t text_size, int32_t* ids,
                    size_t capacity, size_t* num_ids, char* error, size_t error_size) {
  try {
    if (model == nullptr || num_ids == nullptr || (text == nullptr && text_size > 0) ||
        (ids == nullptr && capacity > 0)) {
      return Fail(kInvalidArgument, "kiln_spm_encode: null argument", error, error_size);
    }
    *num_ids = 0;
    if (text_size == 0) return kOk;
    std::vector<int> encoded;
    const sentencepiece::util::Status status =
        model->processor.Encode(std::string_view(text, text_size), &encoded);
    if (!status.ok()) {
      return Fail(static_cast<int>(status.code()), status.ToString().c_str(), error, error_size);
    }
    *num_ids = encoded.size();
    const size_t n = std::min(encoded.size(), capacity);
    for (size_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(encoded[i]);
    return kOk;
  } catch (...) {
    return FailWithCurrentException(error, error_size);
  }
}

int kiln_spm_vocab_size(const KilnSpmModel* model) {
  try {
    return model == nullptr ? -1 : model->processor.GetPieceSize();
  } catch (...) {
    return -1;
  }
}

// Destructors are noexcept: nothing can be thrown here.
void kiln_spm_free(KilnSpmModel* model) { delete model; }

}  // extern "C"
