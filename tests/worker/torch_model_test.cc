#include "worker/torch_model.h"

#include <unistd.h>
#include <algorithm>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "common/fork_safety.h"
#include "common/model_config_loader.h"
#include "common/safetensors.h"
#include "common/safetensors_writer.h"
#include "tests/run_command.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::ModelsDir;
using kiln::testing::TempDir;

ModelSpec DemoSpec(const std::string& name) {
  absl::StatusOr<ModelSpec> spec = LoadModel(ModelsDir() + "/" + name);
  if (!spec.ok()) FAIL("cannot load demo model " << name << ": " << spec.status().message());
  return *spec;
}

// The tensors of the reference pair that make_models.py stored beside the model.
struct Reference {
  std::unique_ptr<MappedSafetensors> file;
  std::vector<TensorView> inputs;   // in the config's input order
  std::vector<TensorView> outputs;  // in the config's output order
};

TensorView ViewOf(const SafetensorsTensor& t, const std::string& name) {
  return TensorView{name, t.dtype, t.shape, t.data, t.nbytes()};
}

Reference LoadReference(const ModelSpec& spec) {
  Reference ref;
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> file =
      MappedSafetensors::Open(spec.version_dir + "/reference.safetensors");
  if (!file.ok()) FAIL(file.status().message());
  ref.file = *std::move(file);
  auto find = [&](const std::string& key, const std::string& name) {
    const SafetensorsTensor* t = ref.file->index().Find(key);
    if (t == nullptr) FAIL("reference.safetensors has no '" << key << "'");
    return ViewOf(*t, name);
  };
  for (const TensorConfig& in : spec.config.input()) {
    ref.inputs.push_back(find("input." + in.name(), in.name()));
  }
  for (const TensorConfig& out : spec.config.output()) {
    ref.outputs.push_back(find("output." + out.name(), out.name()));
  }
  return ref;
}

// Largest absolute difference between two FP32 tensors of the same shape.
double MaxAbsDiff(const Tensor& actual, const TensorView& expected) {
  REQUIRE(actual.dtype == DType::kFloat32);
  REQUIRE(expected.dtype == DType::kFloat32);
  REQUIRE(actual.shape == expected.shape);
  REQUIRE(actual.bytes.size() == expected.nbytes);
  std::vector<float> a(actual.bytes.size() / 4), e(expected.nbytes / 4);
  std::memcpy(a.data(), actual.bytes.data(), actual.bytes.size());
  std::memcpy(e.data(), expected.data, expected.nbytes);
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(std::isfinite(a[i]));
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - e[i]));
  }
  return worst;
}

void CheckMatchesReference(TorchModel& model) {
  Reference ref = LoadReference(model.spec());
  absl::StatusOr<std::vector<Tensor>> outputs = model.Forward(ref.inputs);
  REQUIRE(outputs.ok());
  REQUIRE(outputs->size() == ref.outputs.size());
  for (size_t i = 0; i < ref.outputs.size(); ++i) {
    CHECK((*outputs)[i].name == ref.outputs[i].name);
    CHECK(MaxAbsDiff((*outputs)[i], ref.outputs[i]) <= 1e-4);
  }
}

TEST_CASE("every demo model's weights are views of its mapping and it matches PyTorch",
          "[torch][demo]") {
  const std::string name = GENERATE("mlp", "resnet18", "resnet50", "textcls");
  INFO("model " << name);
  absl::StatusOr<std::unique_ptr<TorchModel>> model = TorchModel::Load(DemoSpec(name));
  REQUIRE(model.ok());
  const MappedSafetensors* weights = (*model)->weights();
  REQUIRE(weights != nullptr);

  const std::vector<TensorView> params = (*model)->Parameters();
  REQUIRE(params.size() == weights->index().tensors().size());
  for (const TensorView& p : params) {
    INFO("tensor " << p.name);
    CHECK(weights->Contains(p.data, p.nbytes));
    const SafetensorsTensor* stored = weights->index().Find(p.name);
    REQUIRE(stored != nullptr);
    CHECK(p.data == stored->data);
  }
  CHECK((*model)->stats().tensors_rebound == static_cast<int64_t>(params.size()));
  CHECK((*model)->stats().tensors_copied == 0);

  CheckMatchesReference(**model);
}

// Private anonymous memory of this process (heap, not file mappings), from smaps_rollup.
int64_t AnonymousKiB() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string key;
  int64_t value = -1;
  while (in >> key) {
    if (key == "Anonymous:" && in >> value) return value;
  }
  FAIL("no Anonymous: line in /proc/self/smaps_rollup");
  return -1;
}

TEST_CASE("after the rebind the heap copy of the weights is released", "[torch][demo]") {
  // Load a small model first so LibTorch's own one-time allocations are not counted.
  REQUIRE(TorchModel::Load(DemoSpec("mlp")).ok());
  const int64_t before = AnonymousKiB();
  absl::StatusOr<std::unique_ptr<TorchModel>> model = TorchModel::Load(DemoSpec("resnet50"));
  REQUIRE(model.ok());
  const int64_t grown = AnonymousKiB() - before;
  const int64_t weights = static_cast<int64_t>((*model)->weights()->size() / 1024);
  INFO("anonymous memory grew by " << grown << " KiB; the weights are " << weights << " KiB");
  CHECK(grown < weights / 10);
}

// The mlp's real tensors, to rearrange into defective weight files.
std::vector<TensorView> MlpTensors(const MappedSafetensors& file) {
  std::vector<TensorView> tensors;
  for (const SafetensorsTensor& t : file.index().tensors()) tensors.push_back(ViewOf(t, t.name));
  return tensors;
}

std::string Serialized(const std::vector<TensorView>& tensors, int data_start_mod = 0) {
  absl::StatusOr<std::string> image = SerializeSafetensors(tensors, {}, data_start_mod);
  if (!image.ok()) FAIL(image.status().message());
  return *image;
}

absl::StatusOr<std::unique_ptr<TorchModel>> LoadWithWeights(const TempDir& tmp,
                                                            const std::string& image) {
  ModelSpec spec = DemoSpec("mlp");
  spec.weights_path = tmp.WriteFile("model.safetensors", image);
  return TorchModel::Load(spec);
}

TEST_CASE("weights that do not match the module are errors naming the tensor", "[torch]") {
  const ModelSpec spec = DemoSpec("mlp");
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> real =
      MappedSafetensors::Open(spec.weights_path);
  REQUIRE(real.ok());
  std::vector<TensorView> tensors = MlpTensors(**real);
  REQUIRE(tensors.size() >= 2);
  TempDir tmp;

  SECTION("a missing tensor") {
    const std::string dropped = tensors.back().name;
    tensors.pop_back();
    absl::StatusOr<std::unique_ptr<TorchModel>> model = LoadWithWeights(tmp, Serialized(tensors));
    REQUIRE_FALSE(model.ok());
    CHECK_THAT(std::string(model.status().message()), Contains("no tensor '" + dropped + "'"));
  }
  SECTION("an extra tensor") {
    const float extra[2] = {1, 2};
    tensors.push_back(TensorView{"head.extra", DType::kFloat32, {2}, extra, sizeof(extra)});
    absl::StatusOr<std::unique_ptr<TorchModel>> model = LoadWithWeights(tmp, Serialized(tensors));
    REQUIRE_FALSE(model.ok());
    CHECK_THAT(std::string(model.status().message()),
               Contains("tensor 'head.extra' (F32 [2]) is not a parameter or buffer"));
  }
  SECTION("a shape mismatch") {
    TensorView& first = tensors.front();
    const std::vector<int64_t> expected = first.shape;
    first.shape = {static_cast<int64_t>(first.nbytes / DTypeSize(first.dtype))};
    absl::StatusOr<std::unique_ptr<TorchModel>> model = LoadWithWeights(tmp, Serialized(tensors));
    REQUIRE_FALSE(model.ok());
    CHECK_THAT(std::string(model.status().message()),
               Contains("tensor '" + first.name + "' is " + std::string(DTypeName(first.dtype)) +
                        " " + ShapeString(first.shape)));
    CHECK_THAT(std::string(model.status().message()), Contains(ShapeString(expected)));
  }
  SECTION("a dtype mismatch") {
    auto f32 = std::find_if(tensors.begin(), tensors.end(),
                            [](const TensorView& t) { return t.dtype == DType::kFloat32; });
    REQUIRE(f32 != tensors.end());
    f32->dtype = DType::kInt32;  // same size, other type
    absl::StatusOr<std::unique_ptr<TorchModel>> model = LoadWithWeights(tmp, Serialized(tensors));
    REQUIRE_FALSE(model.ok());
    CHECK_THAT(std::string(model.status().message()),
               Contains("tensor '" + f32->name + "' is I32"));
  }
}

TEST_CASE("misaligned weights are copied, and the model still matches PyTorch", "[torch]") {
  const ModelSpec spec = DemoSpec("mlp");
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> real =
      MappedSafetensors::Open(spec.weights_path);
  REQUIRE(real.ok());
  TempDir tmp;
  absl::StatusOr<std::unique_ptr<TorchModel>> model =
      LoadWithWeights(tmp, Serialized(MlpTensors(**real), /*data_start_mod=*/1));
  REQUIRE(model.ok());
  CHECK((*model)->stats().tensors_copied ==
        static_cast<int64_t>(real->get()->index().tensors().size()));
  CHECK((*model)->stats().tensors_rebound == 0);
  CheckMatchesReference(**model);
}

TEST_CASE("a corrupt TorchScript file is an error, not a crash", "[torch]") {
  TempDir tmp;
  ModelSpec spec = DemoSpec("mlp");
  spec.model_path = tmp.WriteFile("model.pt", "this is not a zip archive");
  absl::StatusOr<std::unique_ptr<TorchModel>> model = TorchModel::Load(spec);
  REQUIRE_FALSE(model.ok());
  CHECK_THAT(std::string(model.status().message()),
             Contains(spec.model_path + ": cannot load TorchScript"));
}

TEST_CASE("forward rejects inputs that do not fit, without crashing", "[torch]") {
  absl::StatusOr<std::unique_ptr<TorchModel>> model = TorchModel::Load(DemoSpec("mlp"));
  REQUIRE(model.ok());
  std::vector<float> data(2 * 16, 0.5f);
  SECTION("a missing input") {
    absl::StatusOr<std::vector<Tensor>> out = (*model)->Forward({});
    REQUIRE_FALSE(out.ok());
    CHECK(out.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(out.status().message()), Contains("forward needs input 'input'"));
  }
  SECTION("bytes that do not hold the shape") {
    TensorView in{"input", DType::kFloat32, {2, 16}, data.data(), 10};
    absl::StatusOr<std::vector<Tensor>> out = (*model)->Forward({in});
    REQUIRE_FALSE(out.ok());
    CHECK(out.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(out.status().message()), Contains("10 bytes do not hold F32 [2, 16]"));
  }
  SECTION("a shape the module cannot take") {
    TensorView in{"input", DType::kFloat32, {4, 8}, data.data(), data.size() * sizeof(float)};
    absl::StatusOr<std::vector<Tensor>> out = (*model)->Forward({in});
    REQUIRE_FALSE(out.ok());
    // A forward pass that throws is the model's failure (the master validated the request).
    CHECK(out.status().code() == absl::StatusCode::kInternal);
    CHECK_THAT(std::string(out.status().message()), Contains("mlp: forward failed"));
  }
  SECTION("a good input still works afterwards") {
    TensorView in{"input", DType::kFloat32, {2, 16}, data.data(), data.size() * sizeof(float)};
    absl::StatusOr<std::vector<Tensor>> out = (*model)->Forward({in});
    REQUIRE(out.ok());
    REQUIRE(out->size() == 1);
    CHECK((*out)[0].shape == std::vector<int64_t>{2, 4});
  }
}

TEST_CASE("outputs that do not match the config are the model's failure (Internal)", "[torch]") {
  ModelSpec spec = DemoSpec("mlp");
  TensorConfig* extra = spec.config.add_output();  // the module returns one tensor, not two
  extra->set_name("extra");
  extra->set_data_type(TYPE_FP32);
  extra->add_dims(4);
  absl::StatusOr<std::unique_ptr<TorchModel>> model = TorchModel::Load(spec);
  REQUIRE(model.ok());
  std::vector<float> data(2 * 16, 0.5f);
  TensorView in{"input", DType::kFloat32, {2, 16}, data.data(), data.size() * sizeof(float)};
  absl::StatusOr<std::vector<Tensor>> out = (*model)->Forward({in});
  REQUIRE_FALSE(out.ok());
  CHECK(out.status().code() == absl::StatusCode::kInternal);
  CHECK_THAT(std::string(out.status().message()),
             Contains("mlp: forward() returned 1 tensors; the config declares 2 outputs"));
}

// Loading (what the master does before forking the zygote) must leave one thread and no note;
// so must forward passes on one intra-op thread (what a warm template does before forking its
// workers); a pass on two threads must leave the note. Only a process that never ran a forward pass
// can show the first, and other cases of this binary run them, so the hidden case below runs in a
// fresh process: this binary again.
constexpr char kForkChildVariable[] = "KILN_TEST_FORK_CHILD";

TEST_CASE("fork child: load, check fork safety, run forward passes on 1 and 2 threads",
          "[.][fork_child]") {
  if (std::getenv(kForkChildVariable) == nullptr) {
    SUCCEED("a helper of the fork-safety test below; it runs only with " << kForkChildVariable);
    return;
  }
  absl::StatusOr<std::unique_ptr<TorchModel>> resnet = TorchModel::Load(DemoSpec("resnet18"));
  REQUIRE(resnet.ok());
  const absl::Status after_load = CheckForkSafe("after load");
  INFO(after_load.message());
  REQUIRE(after_load.ok());
  absl::StatusOr<std::unique_ptr<TorchModel>> mlp = TorchModel::Load(DemoSpec("mlp"));
  REQUIRE(mlp.ok());
  std::vector<float> data(16, 0.5f);
  TensorView in{"input", DType::kFloat32, {1, 16}, data.data(), data.size() * sizeof(float)};
  TorchModel::SetIntraOpThreads(1);
  REQUIRE((*resnet)->Forward({in}).ok() == false);  // wrong input: still a pass attempted
  REQUIRE((*mlp)->Forward({in}).ok());
  REQUIRE((*mlp)->Forward({in}).ok());
  const absl::Status one_thread = CheckForkSafe("after passes on one thread");
  INFO(one_thread.message());
  REQUIRE(one_thread.ok());
  TorchModel::SetIntraOpThreads(2);
  REQUIRE((*mlp)->Forward({in}).ok());
  const absl::Status two_threads = CheckForkSafe("after a pass on two threads");
  REQUIRE_FALSE(two_threads.ok());
  CHECK_THAT(std::string(two_threads.message()),
             Contains("a forward pass ran on 2 intra-op threads"));
  std::cout << "fork-child: checked\n" << std::flush;
}

TEST_CASE("loading and passes on one thread are fork-safe, a pass on two threads is not",
          "[torch][fork]") {
  const kiln::testing::CommandResult child =
      kiln::testing::RunThisTestBinary("[fork_child]", std::string(kForkChildVariable) + "=1");
  INFO("child output:\n" << child.output);
  CHECK(child.exit_code == 0);
  CHECK_THAT(child.output, Contains("fork-child: checked"));
}

}  // namespace
}  // namespace kiln
