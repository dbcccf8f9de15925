// Small absl::Status helpers (errno, added context), and kiln's error-code policy.
//
// Error-code policy: which absl::StatusCode (= the gRPC code a client sees) for which failure,
// for the whole project. Every error also says what failed in words: the file and field, the
// tensor, the model, the system call.
//
//   INVALID_ARGUMENT    The caller's input is wrong and retrying it unchanged cannot help: a
//                       request that does not match the model's config (tensor names, datatypes,
//                       shapes, contents), a bad command-line flag, and every config value that
//                       is wrong at load time, naming the file and the field. That includes a
//                       config that asks for something this version does not have (e.g. DATA_FILE
//                       warmup data): the loader refuses it as "... is not supported in this
//                       version", with the config's other defects, in the same one status.
//   NOT_FOUND           An unknown model or version; a file or process that does not exist.
//   RESOURCE_EXHAUSTED  Overload: the model's queue is full, or not even one row of a request
//                       fits the worker's memory budget.
//   UNAVAILABLE         Try again later, perhaps elsewhere: the server or model is not ready
//                       yet, is shutting down or draining, or the worker serving the call was
//                       lost (it died, or was killed after its compute timeout).
//   DEADLINE_EXCEEDED   The caller's deadline passed before the answer was ready.
//   INTERNAL            A failure inside the model or the server after the request was
//                       validated: a forward pass that throws, a model whose outputs do not match
//                       its config, a broken invariant. The client did nothing wrong.
//   FAILED_PRECONDITION The system is not in the state the operation needs, and retrying will
//                       not help until someone changes it: a fork with more than one thread, a
//                       KIND_GPU worker whose LibTorch has no CUDA or sees no GPU (found when the
//                       worker starts, since nothing may touch CUDA before the fork).
//   (a system call)     The code its errno maps to (ErrnoStatus: ENOENT -> NOT_FOUND, EACCES ->
//                       PERMISSION_DENIED, ENOMEM -> RESOURCE_EXHAUSTED, ...), with the call or
//                       file and strerror's text, so that callers can tell them apart.
//
// UNIMPLEMENTED is left to gRPC (a method the server does not have); kiln does not return it.
// Statuses become grpc::Status only at the RPC edge (common/grpc_status.h).
//
// Thread-safety: every function here is pure (strerror_r, not strerror) and may be called from
// any thread.
#ifndef KILN_COMMON_STATUS_UTIL_H_
#define KILN_COMMON_STATUS_UTIL_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kiln {

// The status of a failed system call: code absl::ErrnoToStatusCode(err), message
// "<what>: <strerror(err)>", e.g. ErrnoStatus(ENOENT, "x.pbtxt: cannot open") is NOT_FOUND
// "x.pbtxt: cannot open: No such file or directory". `err` is the failed call's errno: save it
// before anything that may change it (close(), say). err == 0 (a call that failed without
// setting errno) gives UNKNOWN "<what>: unknown error (errno 0)", never OK.
absl::Status ErrnoStatus(int err, absl::string_view what);

// `status` with "<prefix>: " put before its message; its code and payloads are kept. An OK
// status stays OK (nothing to annotate). E.g. Annotate(NotFoundError("no file"), "model mlp")
// is NOT_FOUND "model mlp: no file".
absl::Status Annotate(const absl::Status& status, absl::string_view prefix);

}  // namespace kiln

#endif  // KILN_COMMON_STATUS_UTIL_H_
