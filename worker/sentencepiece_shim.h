/* The C API of libkiln_spm_shim.so, a tiny library that wraps SentencePiece for kiln.
 *
 * Why a shim: Debian's libsentencepiece.so.0 carries its own copy of protobuf-lite and exports
 * it, which clashes with the libprotobuf.so.32 that LibTorch and gRPC use (see
 * docs/ARCHITECTURE.md). The server never links sentencepiece; worker/tokenizer.cc dlopen()s this
 * shim with RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND, so sentencepiece and its protobuf stay private
 * to it. Only the functions below are exported (the shim is built with -fvisibility=hidden), and no
 * C++ exception ever leaves them.
 *
 * Conventions: functions that can fail return a status code, 0 for OK and otherwise one of the
 * canonical codes (the numbering of absl::StatusCode and of sentencepiece::util::StatusCode),
 * and write a NUL-terminated message, truncated to fit, into `error` (`error_size` bytes; may be
 * NULL / 0). Thread-safety: kiln_spm_encode and kiln_spm_vocab_size may be called concurrently
 * on one model; kiln_spm_free must not race with any other use of that model.
 */
#ifndef KILN_WORKER_SENTENCEPIECE_SHIM_H_
#define KILN_WORKER_SENTENCEPIECE_SHIM_H_

#include <stddef.h>
#include <stdint.h>

#if defined(KILN_SPM_SHIM_BUILDING)
#define KILN_SPM_EXPORT __attribute__((visibility("default")))
#else
#define KILN_SPM_EXPORT
#endif

/* Bumped on every incompatible change of the functions below. */
#define KILN_SPM_ABI_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

/* A loaded SentencePiece model. Opaque; owned by the caller of kiln_spm_load. */
typedef struct KilnSpmModel KilnSpmModel;

/* KILN_SPM_ABI_VERSION of the shim as it was built. */
KILN_SPM_EXPORT int kiln_spm_abi_version(void);

/* Loads the model file at `path` (NUL-terminated). Returns the model, to be released with
 * kiln_spm_free, or NULL with the failure's code in *code (when `code` is not NULL) and its
 * message in `error`. Starts no thread. */
KILN_SPM_EXPORT KilnSpmModel* kiln_spm_load(const char* path, int* code, char* error,
                                            size_t error_size);

/* Encodes `text_size` bytes of UTF-8 at `text` (NULL only when text_size is 0) into token ids.
 * On OK, *num_ids is the number of ids of the whole text and the first min(*num_ids, capacity)
 * of them are in `ids`; when *num_ids > capacity the caller calls again with a bigger buffer.
 * Empty text gives no ids. */
KILN_SPM_EXPORT int kiln_spm_encode(const KilnSpmModel* model, const char* text, size_t text_size,
                                    int32_t* ids, size_t capacity, size_t* num_ids, char* error,
                                    size_t error_size);

/* Pieces in the vocabulary (ids are 0 .. size - 1); -1 on a NULL model. */
KILN_SPM_EXPORT int kiln_spm_vocab_size(const KilnSpmModel* model);

/* Releases a model from kiln_spm_load; NULL is a no-op. */
KILN_SPM_EXPORT void kiln_spm_free(KilnSpmModel* model);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif /* KILN_WORKER_SENTENCEPIECE_SHIM_H_ */
