#include "server/codec/triton_model_config.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/model_config_loader.h"
#include "common/shape.h"
#include "google/protobuf/text_format.h"
#include "server/codec/infer_codec.h"

namespace kiln {
namespace {

// Triton's names for a TorchScript model.
constexpr char kTritonPlatform[] = "pytorch_libtorch";
constexpr char kTritonBackend[] = "pytorch";

inference::ModelVersionPolicy TritonVersionPolicy(const VersionPolicy& policy) {
  inference::ModelVersionPolicy triton;
  switch (policy.policy_choice_case()) {
    case VersionPolicy::kAll:
      triton.mutable_all();
      break;
    case VersionPolicy::kSpecific:
      triton.mutable_specific()->mutable_versions()->Add(policy.specific().versions().begin(),
                                                         policy.specific().versions().end());
      break;
    case VersionPolicy::kLatest:
    case VersionPolicy::POLICY_CHOICE_NOT_SET:
      triton.mutable_latest()->set_num_versions(
          policy.has_latest() && policy.latest().num_versions() > 0 ? policy.latest().num_versions()
                                                                    : 1);
      break;
  }
  return triton;
}

void AddInput(const TensorConfig& tensor, bool optional, inference::ModelConfig* triton) {
  inference::ModelInput* input = triton->add_input();
  input->set_name(tensor.name());
  input->set_data_type(TritonDataType(tensor.data_type()));
  input->mutable_dims()->Add(tensor.dims().begin(), tensor.dims().end());
  input->set_optional(optional);
}

// One sample per warmed shape: each model input at that shape, without the batch dim.
void AddWarmupSamples(const ModelConfig& config, inference::ModelConfig* triton) {
  if (config.warmup().has_enabled() && !config.warmup().enabled()) return;
  for (const Shape& shape : WarmupShapes(config)) {
    inference::ModelWarmup* sample = triton->add_model_warmup();
    sample->set_name(
        absl::StrCat("kiln_warmup_", absl::StrReplaceAll(shape.Describe(), {{" ", "_"}})));
    sample->set_batch_size(shape.batch_size);
    sample->set_count(config.warmup().calls_per_shape());
    for (const TensorConfig& tensor : config.input()) {
      std::vector<int64_t> dims = ConcreteShape(tensor, config, shape);
      if (config.max_batch_size() > 0) dims.erase(dims.begin());
      inference::ModelWarmup::Input& input = (*sample->mutable_inputs())[tensor.name()];
      input.set_data_type(TritonDataType(tensor.data_type()));
      input.mutable_dims()->Add(dims.begin(), dims.end());
      if (config.warmup().data() == WarmupConfig::DATA_RANDOM) {
        input.set_random_data(true);
      } else {
        input.set_zero_data(true);
      }
    }
  }
}

}  // namespace

inference::DataType TritonDataType(DataType type) {
  switch (type) {
    case TYPE_BOOL:
      return inference::TYPE_BOOL;
    case TYPE_UINT8:
      return inference::TYPE_UINT8;
    case TYPE_INT8:
      return inference::TYPE_INT8;
    case TYPE_INT16:
      return inference::TYPE_INT16;
    case TYPE_INT32:
      return inference::TYPE_INT32;
    case TYPE_INT64:
      return inference::TYPE_INT64;
    case TYPE_FP16:
      return inference::TYPE_FP16;
    case TYPE_FP32:
      return inference::TYPE_FP32;
    case TYPE_FP64:
      return inference::TYPE_FP64;
    case TYPE_BF16:
      return inference::TYPE_BF16;
    case TYPE_BYTES:
      return inference::TYPE_STRING;
    default:
      return inference::TYPE_INVALID;
  }
}

inference::ModelConfig ToTritonModelConfig(const ModelConfig& config, int instances) {
  inference::ModelConfig triton;
  triton.set_name(config.name());
  triton.set_platform(kTritonPlatform);
  triton.set_backend(kTritonBackend);
  triton.set_default_model_filename(kModelFileName);
  triton.set_max_batch_size(config.max_batch_size());
  *triton.mutable_version_policy() = TritonVersionPolicy(config.version_policy());

  const bool text_model = config.has_tokenizer();
  if (text_model) AddInput(TextInputConfig(config), /*optional=*/true, &triton);
  for (const TensorConfig& tensor : config.input()) AddInput(tensor, text_model, &triton);
  for (const TensorConfig& tensor : config.output()) {
    inference::ModelOutput* output = triton.add_output();
    output->set_name(tensor.name());
    output->set_data_type(TritonDataType(tensor.data_type()));
    output->mutable_dims()->Add(tensor.dims().begin(), tensor.dims().end());
  }

  inference::ModelInstanceGroup* group = triton.add_instance_group();
  group->set_name(absl::StrCat(config.name(), "_0"));
  group->set_count(instances);
  if (config.instance_group().kind() == InstanceConfig::KIND_GPU) {
    group->set_kind(inference::ModelInstanceGroup::KIND_GPU);
    group->mutable_gpus()->Add(config.instance_group().gpus().begin(),
                               config.instance_group().gpus().end());
  } else {
    group->set_kind(inference::ModelInstanceGroup::KIND_CPU);
  }

  AddWarmupSamples(config, &triton);
  google::protobuf::TextFormat::PrintToString(
      config, (*triton.mutable_parameters())[kKilnConfigParameter].mutable_string_value());
  return triton;
}

}  // namespace kiln
