// Converting between Open Inference Protocol (KServe v2) messages and kiln's backend-neutral
// tensors: the validation a request gets against its model's config before it is queued
// (docs/ARCHITECTURE.md, "A request's path"), and the response built from a backend's outputs.
//
// Everything here is a pure function of its arguments: no state, safe to call from any thread.
// Configs are expected to be validated and resolved by common/model_config_loader.cc.
#ifndef KILN_SERVER_CODEC_INFER_CODEC_H_
#define KILN_SERVER_CODEC_INFER_CODEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/shape.h"
#include "common/tensor.h"
#include "proto/grpc_service.pb.h"
#include "proto/model_config.pb.h"

namespace kiln {

// OIP datatype strings ("FP32", "INT64", "BYTES", ...) <-> config DataType. The name of
// TYPE_INVALID (or an unknown value) is "INVALID"; parsing is exact and case-sensitive and
// knows only the types a config can declare (so "UINT16" is std::nullopt).
absl::string_view OipDatatypeName(DataType type);
std::optional<DataType> DataTypeFromOipName(absl::string_view name);

// One decoded input. Numeric inputs: `view` describes dense row-major little-endian bytes that
// point either into the request message (raw_input_contents: zero-copy, valid while the request
// lives, not necessarily aligned for the dtype) or into `owned` (typed contents converted; BOOL
// as one byte 0/1 per element). BYTES inputs: `strings` holds the elements, view.data is null,
// view.nbytes 0 and view.dtype meaningless (read `data_type`).
//
// A plain value without synchronisation. Move it, do not copy it: a copy's view still points
// into the original's `owned`.
struct DecodedInput {
  TensorView view;                    // name, dtype, full shape (incl. batch dim), data, nbytes
  DataType data_type = TYPE_INVALID;  // as declared by the config
  std::vector<uint8_t> owned;
  std::vector<std::string> strings;
};

struct DecodedRequest {
  // In the config's input order, without the optional inputs the request left out; for a text
  // request (`text`), the one BYTES text input.
  std::vector<DecodedInput> inputs;
  bool text = false;
  int64_t batch_size = 0;            // 0 when the model has no batch dim (max_batch_size 0)
  std::vector<std::string> outputs;  // requested output names in request order; empty = all
  // Per requested output, the classes it asks for (Triton's classification extension,
  // server/codec/classification.h); 0: the tensor itself.
  std::vector<uint32_t> class_counts;
  // Triton's schedule policy extension: the request's "priority" and "timeout" (microseconds)
  // parameters; 0 when not given.
  uint64_t priority = 0;
  int64_t timeout_us = 0;
};

// The parameters of Triton's schedule policy extension.
inline constexpr char kPriorityParameter[] = "priority";
inline constexpr char kTimeoutParameter[] = "timeout";

// The BYTES input a text model (one with a tokenizer) takes: tokenizer.text_input, dims [1]
// (shape [batch, 1] with batching), one UTF-8 string per row.
TensorConfig TextInputConfig(const ModelConfig& config);

// The largest BYTES element a request may carry (1 MiB): a text row longer than that is no
// request a tokenizer truncating to max_length tokens needs, and would cost its CPU in full.
inline constexpr uint32_t kMaxBytesElementSize = 1u << 20;

// Validates `request` against `config` and decodes it. A text model takes either its text input
// alone (TextInputConfig; then `text` is set) or its token inputs. Every defect is
// InvalidArgument with a message naming the tensor and what was expected. The model's name and
// version are not looked at here: finding the model is the caller's job.
absl::StatusOr<DecodedRequest> DecodeInferRequest(const inference::ModelInferRequest& request,
                                                  const ModelConfig& config);

// --- compute timing ----------------------------------------------------------------------------
// A request whose parameters hold kTimingParameter = true gets its compute time back in its
// response's parameters (double_param, milliseconds): the worker's wall time
// (kComputeMsParameter) and CPU time (kComputeCpuMsParameter); whether its shape was cold
// (kColdShapeParameter, bool_param); the pid of the worker that ran it (kWorkerPidParameter,
// int64_param); and the shape its passes ran as (kRanAsBatchParameter, kRanAsLengthParameter,
// int64_param: a batch's, or a padded size, not the request's own). The readiness check asks for
// them; so may any client, e.g. kiln-bench elastic, to see the first request a new worker serves.
inline constexpr char kTimingParameter[] = "kiln_timing";
inline constexpr char kComputeMsParameter[] = "kiln_compute_ms";
inline constexpr char kComputeCpuMsParameter[] = "kiln_compute_cpu_ms";
inline constexpr char kColdShapeParameter[] = "kiln_cold_shape";
inline constexpr char kWorkerPidParameter[] = "kiln_worker_pid";
inline constexpr char kRanAsBatchParameter[] = "kiln_ran_as_batch";
inline constexpr char kRanAsLengthParameter[] = "kiln_ran_as_length";

// What those response parameters say; a missing one is unset.
struct ComputeTiming {
  std::optional<double> compute_ms;
  std::optional<double> compute_cpu_ms;
  bool cold_shape = false;
  std::optional<int64_t> worker_pid;
  std::optional<Shape> ran_as;
};

// Whether `request` asks for its timing.
bool WantsTiming(const inference::ModelInferRequest& request);
// Makes `request` ask for its timing.
void AskForTiming(inference::ModelInferRequest* request);
// Writes `timing`'s set fields into `response`'s parameters.
void SetTiming(const ComputeTiming& timing, inference::ModelInferResponse* response);
// Reads them back.
ComputeTiming ReadTiming(const inference::ModelInferResponse& response);

// The client's side, for kiln-bench and the readiness check: a ModelInferRequest for `model`
// (and `version`, empty = the server's choice) carrying every input in raw_input_contents
// (dense row-major little-endian bytes, copied), asking for all outputs. A view whose byte count
// does not match its shape and dtype, or whose dtype has no config DataType, is an
// InvalidArgument naming it.
absl::StatusOr<inference::ModelInferRequest> BuildInferRequest(
    const std::string& model, const std::string& version, const std::vector<TensorView>& inputs);

// The client's side for a text model: its text input (TextInputConfig) holding `texts`, one per
// row, as bytes_contents, shape [rows, 1] ([1] without a batch dim).
inference::ModelInferRequest BuildTextInferRequest(const ModelConfig& config,
                                                   const std::string& version,
                                                   const std::vector<std::string>& texts);

// Fills `response` (model_name, model_version, id, outputs with datatype + shape, and
// raw_output_contents) in the requested order, or the config's order when none was requested,
// an output that asked for classification as its top classes (BYTES, shape [batch, classes] or
// [classes]),
// from the backend's output tensors (named after the config's outputs): the one copy of the
// output bytes the master makes, straight from the worker's arena into the response. A missing
// output, or one whose dtype differs from the config's data_type, whose batch dim differs from the
// request's or whose byte count does not match its shape, is an Internal error.
absl::Status EncodeInferResponse(const ModelConfig& config, const std::string& model_version,
                                 const inference::ModelInferRequest& request,
                                 const DecodedRequest& decoded,
                                 const std::vector<TensorView>& outputs,
                                 inference::ModelInferResponse* response);

// Replaces `response` with the ModelMetadata for a config: name, `versions`, platform,
// inputs (a text model's text input first) and outputs with OIP datatype and shape (the batch
// dim as -1 first when max_batch_size > 0).
void FillModelMetadata(const ModelConfig& config, const std::vector<std::string>& versions,
                       inference::ModelMetadataResponse* response);

}  // namespace kiln

#endif  // KILN_SERVER_CODEC_INFER_CODEC_H_
