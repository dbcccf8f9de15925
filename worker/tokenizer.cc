#include "worker/tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "common/status_util.h"

#ifndef KILN_SPM_SHIM_DEFAULT
#error "KILN_SPM_SHIM_DEFAULT (the path of the built libkiln_spm_shim.so) must be defined"
#endif

namespace kiln {

struct SpmShim {
  std::string path;
  decltype(&kiln_spm_load) load = nullptr;
  decltype(&kiln_spm_encode) encode = nullptr;
  decltype(&kiln_spm_vocab_size) vocab_size = nullptr;
  decltype(&kiln_spm_free) free = nullptr;
};

namespace {

constexpr size_t kErrorBufferSize = 1024;

// The directory of this process's executable, or "" when /proc/self/exe cannot be read.
std::string ExecutableDirectory() {
  std::string buffer(4096, '\0');
  const ssize_t n = readlink("/proc/self/exe", buffer.data(), buffer.size());
  if (n <= 0 || static_cast<size_t>(n) >= buffer.size()) return "";
  buffer.resize(static_cast<size_t>(n));
  const size_t slash = buffer.rfind('/');
  return slash == std::string::npos ? "" : buffer.substr(0, slash);
}

// A status from one of the shim's canonical codes (an unexpected value becomes kUnknown).
absl::Status ShimStatus(int code, absl::string_view message) {
  if (code <= 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::UnknownError(message);
  }
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

// dlsym() of `name` into `fn`; false (with the reason in *why) when it is missing.
template <typename Fn>
bool Resolve(void* handle, const char* name, Fn* fn, std::string* why) {
  dlerror();  // clear any earlier error
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (*fn != nullptr) return true;
  const char* error = dlerror();
  *why = absl::StrCat("does not export ", name,
                      error != nullptr ? absl::StrCat(" (", error, ")") : std::string());
  return false;
}

// Opens and checks one candidate; nullptr with the reason in *why on failure.
const SpmShim* TryOpen(const std::string& path, std::string* why) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (handle == nullptr) {
    const char* error = dlerror();
    absl::string_view reason = error != nullptr ? error : "dlopen failed";
    absl::ConsumePrefix(&reason, absl::StrCat(path, ": "));  // the caller names the path
    *why = std::string(reason);
    return nullptr;
  }
  auto shim = std::make_unique<SpmShim>();
  shim->path = path;
  decltype(&kiln_spm_abi_version) abi_version = nullptr;
  const bool resolved = Resolve(handle, "kiln_spm_abi_version", &abi_version, why) &&
                        Resolve(handle, "kiln_spm_load", &shim->load, why) &&
                        Resolve(handle, "kiln_spm_encode", &shim->encode, why) &&
                        Resolve(handle, "kiln_spm_vocab_size", &shim->vocab_size, why) &&
                        Resolve(handle, "kiln_spm_free", &shim->free, why);
  if (resolved && abi_version() != KILN_SPM_ABI_VERSION) {
    *why = absl::StrCat("has ABI version ", abi_version(), ", this build needs ",
                        KILN_SPM_ABI_VERSION);
  } else if (resolved) {
    return shim.release();  // never unloaded, never freed
  }
  dlclose(handle);
  return nullptr;
}

// The shim of this process, once one loaded.
ABSL_CONST_INIT absl::Mutex shim_mutex(absl::kConstInit);
const SpmShim* process_shim ABSL_GUARDED_BY(shim_mutex) = nullptr;

absl::StatusOr<const SpmShim*> ProcessShim() {
  absl::MutexLock lock(&shim_mutex);
  if (process_shim == nullptr) {
    // A failure is not cached: the next Load tries again (e.g. after KILN_SPM_SHIM was fixed).
    ASSIGN_OR_RETURN(process_shim, OpenSpmShim(SpmShimCandidates()));
  }
  return process_shim;
}

}  // namespace

std::vector<std::string> SpmShimCandidates() {
  const char* env = std::getenv("KILN_SPM_SHIM");
  if (env != nullptr && *env != '\0') return {env};
  std::vector<std::string> candidates;
  const std::string exe_dir = ExecutableDirectory();
  if (!exe_dir.empty()) candidates.push_back(absl::StrCat(exe_dir, "/", kSpmShimFileName));
  const std::string built = KILN_SPM_SHIM_DEFAULT;
  if (std::find(candidates.begin(), candidates.end(), built) == candidates.end()) {
    candidates.push_back(built);
  }
  return candidates;
}

absl::StatusOr<const SpmShim*> OpenSpmShim(const std::vector<std::string>& candidates) {
  std::vector<std::string> failures;
  for (const std::string& path : candidates) {
    std::string why;
    if (const SpmShim* shim = TryOpen(path, &why)) return shim;
    failures.push_back(absl::StrCat(path, ": ", why));
  }
  if (failures.empty()) return absl::FailedPreconditionError("no path to look for the shim");
  return absl::FailedPreconditionError(
      absl::StrCat("cannot load the SentencePiece shim ", kSpmShimFileName,
                   " (set KILN_SPM_SHIM to its path); tried: ", absl::StrJoin(failures, "; ")));
}

Tokenizer::Tokenizer(const SpmShim* shim, KilnSpmModel* model, std::string model_path,
                     int vocab_size)
    : shim_(shim), model_(model), model_path_(std::move(model_path)), vocab_size_(vocab_size) {}

Tokenizer::~Tokenizer() { shim_->free(model_); }

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_path) {
  absl::StatusOr<const SpmShim*> shim = ProcessShim();
  if (!shim.ok()) {
    return Annotate(shim.status(), absl::StrCat("cannot load tokenizer ", model_path));
  }
  char error[kErrorBufferSize] = "";
  int code = 0;
  KilnSpmModel* model = (*shim)->load(model_path.c_str(), &code, error, sizeof(error));
  if (model == nullptr) {
    return ShimStatus(code, absl::StrCat("cannot load tokenizer ", model_path, ": ", error));
  }
  const int vocab_size = (*shim)->vocab_size(model);
  if (vocab_size <= 0) {
    (*shim)->free(model);
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer ", model_path, " has an empty vocabulary"));
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(*shim, model, model_path, vocab_size));
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(absl::string_view text) const {
  std::vector<int32_t> ids(kInitialIdCapacity);
  for (int attempt = 0; attempt < 2; ++attempt) {
    char error[kErrorBufferSize] = "";
    size_t num_ids = 0;
    const int code = shim_->encode(model_, text.data(), text.size(), ids.data(), ids.size(),
                                   &num_ids, error, sizeof(error));
    if (code != 0) {
      return ShimStatus(code, absl::StrCat("tokenizer ", model_path_, " cannot encode ",
                                           text.size(), " bytes of text: ", error));
    }
    const bool fits = num_ids <= ids.size();
    ids.resize(num_ids);
    if (fits) return ids;
  }
  // Encoding is deterministic, so the second call, with room for every id, cannot get here.
  return absl::InternalError(absl::StrCat("tokenizer ", model_path_, ": the id count of ",
                                          text.size(), " bytes of text changed between calls"));
}

}  // namespace kiln
