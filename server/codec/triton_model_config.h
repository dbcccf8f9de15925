// A served model version as Triton's ModelConfig message (proto/triton_model_config.proto): what
// the ModelConfig RPC answers, so that Triton's clients and tools read kiln's models.
//
// Pure functions of their arguments: no state, safe to call from any thread.
#ifndef KILN_SERVER_CODEC_TRITON_MODEL_CONFIG_H_
#define KILN_SERVER_CODEC_TRITON_MODEL_CONFIG_H_

#include "common/model_config_loader.h"
#include "proto/triton_model_config.pb.h"

namespace kiln {

// The parameter holding kiln's resolved settings (kiln.ModelSettings, every default written out)
// in protobuf text format: what kiln.pbtxt says, or would say with its defaults.
inline constexpr char kKilnConfigParameter[] = "kiln_config";

// config.pbtxt as `spec` loaded it, with what Triton fills in itself when it loads a model:
// name; platform "pytorch_libtorch" and backend "pytorch"; default_model_filename;
// version_policy (latest 1); each instance group's name, kind and count (a model without one
// gets a group of `instances` workers). A text model lists its text input first and marks every
// input optional (a request carries either the text or the token inputs). Plus
// parameters[kKilnConfigParameter].
inference::ModelConfig ToTritonModelConfig(const ModelSpec& spec, int instances);

}  // namespace kiln

#endif  // KILN_SERVER_CODEC_TRITON_MODEL_CONFIG_H_
