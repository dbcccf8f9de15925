// A kiln model config as Triton's ModelConfig message (proto/triton_model_config.proto): what
// the ModelConfig RPC answers, so that Triton's clients and tools read kiln's models.
//
// Pure functions of their arguments: no state, safe to call from any thread.
#ifndef KILN_SERVER_CODEC_TRITON_MODEL_CONFIG_H_
#define KILN_SERVER_CODEC_TRITON_MODEL_CONFIG_H_

#include "proto/model_config.pb.h"
#include "proto/triton_model_config.pb.h"

namespace kiln {

// The parameter holding the whole kiln config in protobuf text format: what has no Triton field
// (tokenizer, readiness, memory, supervision, warmup settling) is read there.
inline constexpr char kKilnConfigParameter[] = "kiln_config";

// kiln's DataType as Triton's (TYPE_BYTES is Triton's TYPE_STRING).
inference::DataType TritonDataType(DataType type);

// `config` (validated and resolved, as a served version's spec holds it) in Triton's message:
// - name; platform "pytorch_libtorch" and backend "pytorch" (Triton's names for a TorchScript
//   model); default_model_filename; max_batch_size; version_policy;
// - inputs and outputs with Triton's data types. A text model lists its text input first, and
//   marks every input optional: a request carries either the text or the token inputs;
// - one instance group of `instances` workers, KIND_CPU or KIND_GPU (with its gpus);
// - model_warmup: one sample per warmed shape (zero or random data), `count` = the calls
//   warmup makes before it judges settling (calls_per_shape); none when warmup is disabled;
// - parameters[kKilnConfigParameter]: the kiln config itself.
inference::ModelConfig ToTritonModelConfig(const ModelConfig& config, int instances);

}  // namespace kiln

#endif  // KILN_SERVER_CODEC_TRITON_MODEL_CONFIG_H_
