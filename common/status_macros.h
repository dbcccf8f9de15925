// Early-return macros for absl::Status and absl::StatusOr, in the style of Abseil's and
// Triton's:
//
//   absl::Status Load(const std::string& path) {
//     RETURN_IF_ERROR(CheckPath(path));                      // an absl::Status expression
//     ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));  // declares `text`
//     ASSIGN_OR_RETURN(auto config, Parse(text));              // `auto` works too
//     ASSIGN_OR_RETURN(config_, Resolve(config));              // or an existing variable
//     return absl::OkStatus();
//   }
//
// RETURN_IF_ERROR(expr): `expr` is an absl::Status; when it is not OK the enclosing function
// returns it unchanged (so the function returns absl::Status or any absl::StatusOr<T>). One
// statement: safe as the body of an unbraced if/else.
//
// ASSIGN_OR_RETURN(lhs, expr): `expr` is an absl::StatusOr<T>; when it is not OK the enclosing
// function returns its status, else its value is moved into `lhs` (a declaration such as
// `std::string text` or `auto x`, or an existing variable). Several statements: never the
// body of an unbraced if/else/for, and at most one use per source line (its temporary is named
// after __LINE__). `lhs` may not contain a top-level comma (declare such a variable first);
// `expr` may.
//
// Neither throws nor adds context to the status: where the error needs context (which file,
// which row), write the check by hand with Annotate() (common/status_util.h).
#ifndef KILN_COMMON_STATUS_MACROS_H_
#define KILN_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RETURN_IF_ERROR(expr)                                     \
  do {                                                            \
    ::absl::Status kiln_return_if_error_status_ = (expr);         \
    if (ABSL_PREDICT_FALSE(!kiln_return_if_error_status_.ok())) { \
      return kiln_return_if_error_status_;                        \
    }                                                             \
  } while (false)

#define ASSIGN_OR_RETURN(lhs, ...)                                                       \
  KILN_ASSIGN_OR_RETURN_IMPL_(KILN_STATUS_MACROS_CONCAT_(kiln_statusor_, __LINE__), lhs, \
                              __VA_ARGS__)

// Implementation details of the macros above.
#define KILN_STATUS_MACROS_CONCAT_INNER_(a, b) a##b
#define KILN_STATUS_MACROS_CONCAT_(a, b) KILN_STATUS_MACROS_CONCAT_INNER_(a, b)
#define KILN_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, ...) \
  auto statusor = (__VA_ARGS__);                        \
  if (ABSL_PREDICT_FALSE(!statusor.ok())) {             \
    return std::move(statusor).status();                \
  }                                                     \
  lhs = *std::move(statusor)

#endif  // KILN_COMMON_STATUS_MACROS_H_
