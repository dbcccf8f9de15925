#include "common/status_util.h"

#include <catch2/catch.hpp>
#include <cerrno>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace kiln {
namespace {

TEST_CASE("ErrnoStatus maps errno to its code and says strerror's text", "[status]") {
  const absl::Status missing = ErrnoStatus(ENOENT, "x.pbtxt: cannot open");
  CHECK(missing.code() == absl::StatusCode::kNotFound);
  CHECK(missing.message() == "x.pbtxt: cannot open: No such file or directory");

  const absl::Status denied = ErrnoStatus(EACCES, "open lock");
  CHECK(denied.code() == absl::StatusCode::kPermissionDenied);
  CHECK(denied.message() == "open lock: Permission denied");

  CHECK(ErrnoStatus(ENOMEM, "mmap").code() == absl::StatusCode::kResourceExhausted);
  CHECK(ErrnoStatus(EAGAIN, "fork").code() == absl::StatusCode::kUnavailable);
  CHECK(ErrnoStatus(EINVAL, "ftruncate").code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ErrnoStatus of errno 0 is an error, never OK", "[status]") {
  const absl::Status status = ErrnoStatus(0, "write");
  CHECK(status.code() == absl::StatusCode::kUnknown);
  CHECK(status.message() == "write: unknown error (errno 0)");
}

TEST_CASE("Annotate puts context before the message and keeps the code", "[status]") {
  absl::Status original = absl::ResourceExhaustedError("queue full");
  original.SetPayload("kiln.test/payload", absl::Cord("kept"));
  const absl::Status annotated = Annotate(original, "model 'mlp'");
  CHECK(annotated.code() == absl::StatusCode::kResourceExhausted);
  CHECK(annotated.message() == "model 'mlp': queue full");
  CHECK(annotated.GetPayload("kiln.test/payload") == absl::Cord("kept"));
  CHECK(Annotate(absl::OkStatus(), "model 'mlp'").ok());
}

// --- RETURN_IF_ERROR -------------------------------------------------------------------------

// Runs `first`, then (if it passed) `second`; counts how far it got in *steps.
absl::Status TwoSteps(const absl::Status& first, const absl::Status& second, int* steps) {
  RETURN_IF_ERROR(first);
  ++*steps;
  RETURN_IF_ERROR(second);
  ++*steps;
  return absl::OkStatus();
}

absl::StatusOr<int> StepThenValue(const absl::Status& step) {
  RETURN_IF_ERROR(step);
  return 7;
}

// RETURN_IF_ERROR as the body of an unbraced if/else.
absl::Status Guarded(bool check, const absl::Status& status) {
  if (check)
    RETURN_IF_ERROR(status);
  else
    return absl::InternalError("else branch");
  return absl::OkStatus();
}

TEST_CASE("RETURN_IF_ERROR returns an error at once and passes OK through", "[status]") {
  int steps = 0;
  CHECK(TwoSteps(absl::OkStatus(), absl::OkStatus(), &steps).ok());
  CHECK(steps == 2);

  steps = 0;
  const absl::Status early = TwoSteps(absl::NotFoundError("first"), absl::OkStatus(), &steps);
  CHECK(early == absl::NotFoundError("first"));
  CHECK(steps == 0);

  steps = 0;
  const absl::Status late = TwoSteps(absl::OkStatus(), absl::InternalError("second"), &steps);
  CHECK(late == absl::InternalError("second"));
  CHECK(steps == 1);

  CHECK(StepThenValue(absl::OkStatus()).value_or(0) == 7);
  CHECK(StepThenValue(absl::UnavailableError("down")).status() == absl::UnavailableError("down"));

  CHECK(Guarded(true, absl::OkStatus()).ok());
  CHECK(Guarded(true, absl::DeadlineExceededError("late")) == absl::DeadlineExceededError("late"));
  CHECK(Guarded(false, absl::OkStatus()) == absl::InternalError("else branch"));
}

// --- ASSIGN_OR_RETURN ------------------------------------------------------------------------

absl::StatusOr<std::string> Text(bool ok) {
  if (!ok) return absl::InvalidArgumentError("no text");
  return std::string("hello");
}

absl::StatusOr<std::unique_ptr<int>> Boxed(int value) {
  if (value < 0) return absl::OutOfRangeError("negative");
  return std::make_unique<int>(value);
}

// A declaration as lhs.
absl::StatusOr<size_t> Length(bool ok) {
  ASSIGN_OR_RETURN(std::string text, Text(ok));
  return text.size();
}

// `auto`, and a move-only value.
absl::StatusOr<int> Unbox(int value) {
  ASSIGN_OR_RETURN(auto box, Boxed(value));
  return *box;
}

// An existing variable as lhs, in a function returning absl::Status.
absl::Status Fill(bool ok, std::string* out) {
  ASSIGN_OR_RETURN(*out, Text(ok));
  return absl::OkStatus();
}

// Two uses in one scope, the second after the first one's value is used; an expression with a
// comma outside parentheses (template arguments).
absl::StatusOr<int> Sum(int a, int b, int* reached) {
  ASSIGN_OR_RETURN(std::unique_ptr<int> x, Boxed(a));
  ++*reached;
  ASSIGN_OR_RETURN(std::unique_ptr<int> y, Boxed(b));
  ++*reached;
  ASSIGN_OR_RETURN(auto pair, absl::StatusOr<std::pair<int, int>>(std::make_pair(*x, *y)));
  return pair.first + pair.second;
}

TEST_CASE("ASSIGN_OR_RETURN assigns the value or returns the status", "[status]") {
  CHECK(Length(true).value_or(0) == 5);
  CHECK(Length(false).status() == absl::InvalidArgumentError("no text"));

  CHECK(Unbox(3).value_or(0) == 3);
  CHECK(Unbox(-1).status() == absl::OutOfRangeError("negative"));

  std::string out = "unchanged";
  CHECK(Fill(true, &out).ok());
  CHECK(out == "hello");
  out = "unchanged";
  CHECK(Fill(false, &out) == absl::InvalidArgumentError("no text"));
  CHECK(out == "unchanged");
}

TEST_CASE("two ASSIGN_OR_RETURNs in one scope each stop at their own error", "[status]") {
  int reached = 0;
  CHECK(Sum(2, 3, &reached).value_or(0) == 5);
  CHECK(reached == 2);

  reached = 0;
  CHECK(Sum(-1, 3, &reached).status() == absl::OutOfRangeError("negative"));
  CHECK(reached == 0);

  reached = 0;
  CHECK(Sum(2, -1, &reached).status() == absl::OutOfRangeError("negative"));
  CHECK(reached == 1);
}

// --- gRPC ------------------------------------------------------------------------------------

TEST_CASE("ToGrpcStatus and FromGrpcStatus keep every code and the message", "[status][grpc]") {
  const std::vector<std::pair<absl::StatusCode, grpc::StatusCode>> codes = {
      {absl::StatusCode::kCancelled, grpc::StatusCode::CANCELLED},
      {absl::StatusCode::kUnknown, grpc::StatusCode::UNKNOWN},
      {absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
      {absl::StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND},
      {absl::StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS},
      {absl::StatusCode::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED},
      {absl::StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::StatusCode::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION},
      {absl::StatusCode::kAborted, grpc::StatusCode::ABORTED},
      {absl::StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE},
      {absl::StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED},
      {absl::StatusCode::kInternal, grpc::StatusCode::INTERNAL},
      {absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE},
      {absl::StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS},
      {absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED},
  };
  for (const auto& [absl_code, grpc_code] : codes) {
    INFO("absl code " << absl::StatusCodeToString(absl_code));
    const absl::Status status(absl_code, "what went wrong");
    const grpc::Status converted = ToGrpcStatus(status);
    CHECK(converted.error_code() == grpc_code);
    CHECK(converted.error_message() == "what went wrong");
    CHECK(FromGrpcStatus(converted) == status);
    CHECK(FromGrpcStatus(grpc::Status(grpc_code, "from grpc")) ==
          absl::Status(absl_code, "from grpc"));
  }
  CHECK(ToGrpcStatus(absl::OkStatus()).ok());
  CHECK(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST_CASE("a gRPC code outside the shared range becomes UNKNOWN", "[status][grpc]") {
  const absl::Status status =
      // 20: past UNAUTHENTICATED (16) yet a value grpc::StatusCode can hold (its values span
      // -1..16, so -32..31); casting e.g. 99 to the enum is itself undefined (UBSan says so).
      FromGrpcStatus(grpc::Status(static_cast<grpc::StatusCode>(20), "odd code"));
  CHECK(status.code() == absl::StatusCode::kUnknown);
  CHECK(status.message() == "odd code");
}

}  // namespace
}  // namespace kiln
