#include "server/codec/triton_model_config.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/triton_config.h"
#include "google/protobuf/text_format.h"
#include "server/codec/infer_codec.h"

namespace kiln {
namespace {

inference::ModelInput TritonInput(const TensorConfig& tensor) {
  inference::ModelInput input;
  input.set_name(tensor.name());
  input.set_data_type(TritonDataType(tensor.data_type()));
  input.mutable_dims()->Add(tensor.dims().begin(), tensor.dims().end());
  return input;
}

// kiln's settings as kiln.pbtxt would hold them, resolved.
std::string SettingsText(const ModelConfig& config) {
  ModelSettings settings;
  *settings.mutable_warmup() = config.warmup();
  // The loader's, from config.pbtxt's model_warmup (which the answer holds): kiln.pbtxt refuses it.
  settings.mutable_warmup()->clear_input_files();
  *settings.mutable_memory() = config.memory();
  *settings.mutable_readiness() = config.readiness();
  *settings.mutable_supervision() = config.supervision();
  if (config.has_tokenizer()) *settings.mutable_tokenizer() = config.tokenizer();
  std::string text;
  google::protobuf::TextFormat::PrintToString(settings, &text);
  return text;
}

}  // namespace

inference::ModelConfig ToTritonModelConfig(const ModelSpec& spec, int instances) {
  const ModelConfig& config = spec.config;
  inference::ModelConfig triton = spec.triton;
  triton.set_name(config.name());
  triton.set_platform(kTritonPlatform);
  triton.set_backend(kTritonBackend);
  triton.set_default_model_filename(config.model_filename());
  if (!triton.has_version_policy())
    triton.mutable_version_policy()->mutable_latest()->set_num_versions(1);

  // The workers serving now (automatic counts and scaling change them); several groups keep the
  // counts they were written with.
  const bool gpu = config.instance_group().kind() == InstanceConfig::KIND_GPU;
  if (triton.instance_group().empty()) {
    triton.add_instance_group()->mutable_gpus()->CopyFrom(config.instance_group().gpus());
  }
  for (int i = 0; i < triton.instance_group_size(); ++i) {
    inference::ModelInstanceGroup& group = *triton.mutable_instance_group(i);
    if (group.name().empty()) group.set_name(absl::StrCat(config.name(), "_", i));
    if (triton.instance_group_size() == 1) {
      group.set_count(instances / std::max(1, group.gpus_size()));  // Triton's is per GPU
    } else if (group.count() == 0) {
      group.set_count(1);
    }
    group.set_kind(gpu ? inference::ModelInstanceGroup::KIND_GPU
                       : inference::ModelInstanceGroup::KIND_CPU);
  }

  if (config.has_tokenizer()) {
    // Rebuilt in kiln's order: the text input the tokenizer adds, then the token inputs, all
    // optional.
    triton.clear_input();
    *triton.add_input() = TritonInput(TextInputConfig(config));
    for (const TensorConfig& tensor : config.input()) *triton.add_input() = TritonInput(tensor);
    for (inference::ModelInput& input : *triton.mutable_input()) input.set_optional(true);
  }
  (*triton.mutable_parameters())[kKilnConfigParameter].set_string_value(SettingsText(config));
  return triton;
}

}  // namespace kiln
