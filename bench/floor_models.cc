#include "bench/floor_models.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace kiln::bench {
namespace {

// The zero outputs of `spec`'s config; InvalidArgument for an output kiln cannot return.
absl::StatusOr<std::vector<FloorOutput>> MakeOutputs(const ModelSpec& spec) {
  const ModelConfig& config = spec.config;
  const int64_t rows = std::max<int64_t>(config.max_batch_size(), 1);
  std::vector<FloorOutput> outputs;
  for (const TensorConfig& tensor : config.output()) {
    const std::optional<DType> dtype = DTypeFromDataType(tensor.data_type());
    if (!dtype.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(spec.config_path, ": output '", tensor.name(),
                       "' has a data type kiln cannot return (BYTES): the floor would not "
                       "answer what kiln-server answers"));
    }
    FloorOutput output;
    output.name = tensor.name();
    output.dtype = *dtype;
    for (const int64_t dim : tensor.dims()) output.row_shape.push_back(dim < 0 ? 1 : dim);
    const std::optional<size_t> row_bytes = ByteSize(*dtype, output.row_shape);
    if (!row_bytes.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(spec.config_path, ": output '", tensor.name(), "' is too large"));
    }
    output.row_bytes = *row_bytes;
    output.zeros.assign(output.row_bytes * static_cast<size_t>(rows), 0);
    outputs.push_back(std::move(output));
  }
  return outputs;
}

}  // namespace

std::vector<TensorView> ZeroOutputs(const FloorVersion& version, int64_t batch_size) {
  const bool batched = version.spec.config.max_batch_size() > 0;
  std::vector<TensorView> views;
  views.reserve(version.outputs.size());
  for (const FloorOutput& output : version.outputs) {
    TensorView view;
    view.name = output.name;
    view.dtype = output.dtype;
    if (batched) view.shape.push_back(batch_size);
    view.shape.insert(view.shape.end(), output.row_shape.begin(), output.row_shape.end());
    view.data = output.zeros.data();
    view.nbytes = output.row_bytes * static_cast<size_t>(batched ? batch_size : 1);
    views.push_back(std::move(view));
  }
  return views;
}

absl::StatusOr<std::unique_ptr<FloorModels>> FloorModels::Load(
    const std::string& repository, const std::vector<std::string>& names) {
  std::error_code error;
  if (!std::filesystem::is_directory(repository, error)) {
    return absl::NotFoundError(
        absl::StrCat("model repository '", repository, "' is not a directory"));
  }
  std::vector<ModelSpec> specs;
  if (names.empty()) {
    ASSIGN_OR_RETURN(specs, LoadModelRepository(repository));
  } else {
    for (const std::string& name : names) {
      const std::string dir = absl::StrCat(repository, "/", name);
      if (!std::filesystem::is_directory(dir, error)) {
        return absl::NotFoundError(
            absl::StrCat("model '", name, "': the repository has no directory ", dir));
      }
      ASSIGN_OR_RETURN(std::vector<ModelSpec> versions, LoadModelVersions(dir));
      for (ModelSpec& spec : versions) specs.push_back(std::move(spec));
    }
  }
  auto models = std::unique_ptr<FloorModels>(new FloorModels());
  for (ModelSpec& spec : specs) {
    FloorVersion version;
    ASSIGN_OR_RETURN(version.outputs, MakeOutputs(spec));
    version.spec = std::move(spec);
    models->models_[version.spec.config.name()].push_back(std::move(version));
  }
  for (auto& [name, versions] : models->models_) {
    std::sort(versions.begin(), versions.end(), [](const FloorVersion& a, const FloorVersion& b) {
      return a.spec.version < b.spec.version;
    });
  }
  return models;
}

absl::StatusOr<const FloorVersion*> FloorModels::Route(const std::string& name,
                                                       const std::string& version) const {
  int64_t number = 0;
  if (!version.empty() && (!absl::SimpleAtoi(version, &number) || number < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("model_version '", version, "' of model '", name,
                                                   "': expected a version number >= 1"));
  }
  const auto found = models_.find(name);
  if (found == models_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "unknown model '", name, "'; this server serves: ", absl::StrJoin(Names(), ", ")));
  }
  const std::vector<FloorVersion>& versions = found->second;
  if (version.empty()) return &versions.back();
  for (const FloorVersion& served : versions) {
    if (served.spec.version == number) return &served;
  }
  return absl::NotFoundError(absl::StrCat("model '", name, "' has no version ", number,
                                          " served; it serves version(s) ",
                                          absl::StrJoin(Versions(name), ", ")));
}

std::vector<std::string> FloorModels::Versions(const std::string& name) const {
  std::vector<std::string> numbers;
  const auto found = models_.find(name);
  if (found == models_.end()) return numbers;
  for (const FloorVersion& served : found->second) {
    numbers.push_back(std::to_string(served.spec.version));
  }
  return numbers;
}

std::vector<std::string> FloorModels::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, versions] : models_) names.push_back(name);
  return names;
}

}  // namespace kiln::bench
