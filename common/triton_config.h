// Triton's config.pbtxt (inference.ModelConfig, proto/triton_model_config.proto) as kiln reads it
// (docs/model-repository.md): what kiln implements is translated into the resolved
// kiln::ModelConfig, and every other field a config sets is refused at its line, never ignored.
//
// Pure functions of their arguments (and, for label files, the file system): safe from any
// thread.
#ifndef KILN_COMMON_TRITON_CONFIG_H_
#define KILN_COMMON_TRITON_CONFIG_H_

#include <string>
#include <vector>

#include "common/config_defects.h"
#include "google/protobuf/text_format.h"
#include "proto/model_config.pb.h"
#include "proto/triton_model_config.pb.h"

namespace kiln {

// Triton's names for a TorchScript model.
inline constexpr char kTritonPlatform[] = "pytorch_libtorch";
inline constexpr char kTritonBackend[] = "pytorch";

// Adds a defect, with the file's line, for each field `triton` sets that kiln does not implement
// (sequence_batching, ensemble_scheduling, optimization, response_cache, an optional input, ...).
// `locations` is where the parser found each field.
void RefuseUnsupportedTritonFields(const inference::ModelConfig& triton,
                                   const google::protobuf::TextFormat::ParseInfoTree& locations,
                                   Defects& defects);

// Translates the Triton half of a model into `config`: name (default `dir_name`, else equal to
// it), platform/backend, max_batch_size, inputs and outputs (data types, dims, reshape, format,
// label files found in `model_dir`), instance groups (summed into one kind), the PyTorch
// backend's parameters, version_policy, default_model_filename and dynamic_batching. What is
// accepted but changes nothing here (a GPU-only parameter, dynamic batching before the batcher)
// is said in `notes`, which the server logs.
void FromTritonConfig(const inference::ModelConfig& triton, const std::string& model_dir,
                      const std::string& dir_name, ModelConfig* config, Defects& defects,
                      std::vector<std::string>* notes);

// The batch sizes a model is warmed at when kiln.pbtxt names none: 1, dynamic_batching's
// preferred sizes and max_batch_size (just 1 without a batch dimension), ascending.
std::vector<int32_t> DefaultWarmupBatchSizes(const inference::ModelConfig& triton);

// Adds model_warmup's samples to `config`'s resolved warmup: their batch sizes, the lengths their
// dims give the variable (-1) dims, random data when a sample asks for it, each input_data_file
// (in <model_dir>/warmup/, holding one row of the input at the sample's dims, as Triton reads
// it), and `count` calls at least. Each sample must give every input with the config's data type
// and a dims that matches.
void AddTritonWarmup(const inference::ModelConfig& triton, const std::string& model_dir,
                     ModelConfig* config, Defects& defects);

// kiln's DataType for Triton's (TYPE_STRING is TYPE_BYTES); TYPE_INVALID for one kiln lacks
// (TYPE_UINT16, TYPE_UINT32, TYPE_UINT64).
DataType FromTritonDataType(inference::DataType type);
// Triton's DataType for kiln's.
inference::DataType TritonDataType(DataType type);

}  // namespace kiln

#endif  // KILN_COMMON_TRITON_CONFIG_H_
