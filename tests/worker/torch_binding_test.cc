// TorchModel's binding of the config's tensors to forward() (Triton's PyTorch backend's rules:
// <name>__<index> or forward()'s argument names for inputs, <name>__<index> or position for
// outputs, a dict result by name), reshape, and the PyTorch backend's options (TorchOptions) in
// force during forward(). The TorchScript modules are written here from TorchScript source, so
// this file includes LibTorch (worker/torch_model.h does not).
#include <c10/core/InferenceMode.h>
#include <torch/csrc/jit/frontend/resolver.h>
#include <torch/csrc/jit/frontend/sugared_value.h>
#include <torch/csrc/jit/passes/tensorexpr_fuser.h>
#include <torch/csrc/jit/python/update_graph_executor_opt.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/library.h>
#include <torch/script.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/model_config_loader.h"
#include "google/protobuf/text_format.h"
#include "tests/test_paths.h"
#include "worker/torch_model.h"
#include "worker/warmup.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::TempDir;

// What the probe op (below) saw the last time forward() called it.
struct ProbeSeen {
  int calls = 0;
  bool inference_mode = false;
  bool grad_enabled = true;
  bool jit_executor = false;
  bool jit_profiling = false;
  bool tensor_fuser = false;
  bool graph_optimize = false;
};
ProbeSeen probe_seen;

at::Tensor Probe(const at::Tensor& x) {
  ++probe_seen.calls;
  probe_seen.inference_mode = c10::InferenceMode::is_enabled();
  probe_seen.grad_enabled = at::GradMode::is_enabled();
  probe_seen.jit_executor = torch::jit::getExecutorMode();
  probe_seen.jit_profiling = torch::jit::getProfilingMode();
  probe_seen.tensor_fuser = torch::jit::tensorExprFuserEnabled();
  probe_seen.graph_optimize = torch::jit::getGraphExecutorOptimize();
  return x.clone();
}

TORCH_LIBRARY(kiln_binding_test, m) { m.def("probe(Tensor x) -> Tensor", &Probe); }

// Resolves `torch` (as LibTorch's own resolver does) and `kiln_binding_test`, the probe's
// namespace, in TorchScript source compiled here (torch.ops needs Python's resolver).
struct TestResolver : torch::jit::Resolver {
  std::shared_ptr<torch::jit::SugaredValue> resolveValue(
      const std::string& name, torch::jit::GraphFunction& function,
      const torch::jit::SourceRange& loc) override {
    if (name == "torch") return std::make_shared<torch::jit::BuiltinModule>("aten");
    if (name == "kiln_binding_test") {
      return std::make_shared<torch::jit::BuiltinModule>("kiln_binding_test");
    }
    return nullptr;
  }
  c10::TypePtr resolveType(const std::string& name, const torch::jit::SourceRange& loc) override {
    return nullptr;
  }
};

// Writes a TorchScript module whose methods are `source` to <tmp>/model.pt; returns its path.
std::string WriteModule(const TempDir& tmp, const std::string& source) {
  torch::jit::Module module("__torch__.BindingTest");
  module.define(source, std::make_shared<TestResolver>());
  const std::string path = tmp.path() + "/model.pt";
  module.save(path);
  return path;
}

// A spec for `model_path` whose config is `config_text` (kiln.ModelConfig, text format), with
// the loader's default TorchOptions when the text sets none.
ModelSpec Spec(const std::string& model_path, const std::string& config_text) {
  ModelSpec spec;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(config_text, &spec.config));
  if (!spec.config.has_torch()) {
    spec.config.mutable_torch()->set_jit_executor(true);
    spec.config.mutable_torch()->set_jit_profiling(true);
    spec.config.mutable_torch()->set_tensor_fuser(true);
  }
  spec.model_path = model_path;
  return spec;
}

std::unique_ptr<TorchModel> MustLoad(const ModelSpec& spec) {
  absl::StatusOr<std::unique_ptr<TorchModel>> model = TorchModel::Load(spec);
  INFO(model.status().message());
  REQUIRE(model.ok());
  return *std::move(model);
}

// The message of a Load that must fail with InvalidArgument.
std::string LoadError(const ModelSpec& spec) {
  absl::StatusOr<std::unique_ptr<TorchModel>> model = TorchModel::Load(spec);
  REQUIRE_FALSE(model.ok());
  CHECK(model.status().code() == absl::StatusCode::kInvalidArgument);
  return std::string(model.status().message());
}

// An FP32 input viewing `values` (which must outlive the call).
TensorView In(const std::string& name, std::vector<int64_t> shape,
              const std::vector<float>& values) {
  return TensorView{name, DType::kFloat32, std::move(shape), values.data(),
                    values.size() * sizeof(float)};
}

std::vector<float> Floats(const Tensor& tensor) {
  REQUIRE(tensor.dtype == DType::kFloat32);
  std::vector<float> values(tensor.bytes.size() / sizeof(float));
  std::memcpy(values.data(), tensor.bytes.data(), tensor.bytes.size());
  return values;
}

std::vector<Tensor> MustForward(TorchModel& model, const std::vector<TensorView>& inputs) {
  absl::StatusOr<std::vector<Tensor>> outputs = model.Forward(inputs);
  INFO(outputs.status().message());
  REQUIRE(outputs.ok());
  return *std::move(outputs);
}

constexpr char kSubtract[] = R"(
def forward(self, a, b):
    return a - b
)";

const std::vector<float> kA = {1, 2, 3, 4};
const std::vector<float> kB = {10, 20, 30, 40};

TEST_CASE("inputs named <name>__<index> go to forward()'s argument <index>", "[torch][binding]") {
  TempDir tmp;
  // Config order INPUT__1, INPUT__0: forward(a, b) must get a = INPUT__0, b = INPUT__1.
  std::unique_ptr<TorchModel> model = MustLoad(Spec(WriteModule(tmp, kSubtract), R"pb(
    name: "sub"
    max_batch_size: 4
    input { name: "INPUT__1" data_type: TYPE_FP32 dims: 2 }
    input { name: "INPUT__0" data_type: TYPE_FP32 dims: 2 }
    output { name: "OUTPUT__0" data_type: TYPE_FP32 dims: 2 })pb"));
  const std::vector<Tensor> out =
      MustForward(*model, {In("INPUT__1", {2, 2}, kB), In("INPUT__0", {2, 2}, kA)});
  REQUIRE(out.size() == 1);
  CHECK(out[0].name == "OUTPUT__0");
  CHECK(out[0].shape == std::vector<int64_t>{2, 2});
  CHECK(Floats(out[0]) == std::vector<float>{-9, -18, -27, -36});  // a - b, not b - a
}

TEST_CASE("inputs named after forward()'s arguments are bound by name in any order",
          "[torch][binding]") {
  TempDir tmp;
  std::unique_ptr<TorchModel> model = MustLoad(Spec(WriteModule(tmp, kSubtract), R"pb(
    name: "sub"
    max_batch_size: 4
    input { name: "b" data_type: TYPE_FP32 dims: 2 }
    input { name: "a" data_type: TYPE_FP32 dims: 2 }
    output { name: "diff" data_type: TYPE_FP32 dims: 2 })pb"));
  const std::vector<Tensor> out = MustForward(*model, {In("b", {2, 2}, kB), In("a", {2, 2}, kA)});
  REQUIRE(out.size() == 1);
  CHECK(out[0].name == "diff");
  CHECK(Floats(out[0]) == std::vector<float>{-9, -18, -27, -36});
}

TEST_CASE("inputs that follow neither rule are bound in the config's order, as Triton does",
          "[torch][binding]") {
  TempDir tmp;
  const std::string path = WriteModule(tmp, kSubtract);
  std::unique_ptr<TorchModel> model = MustLoad(Spec(path, R"pb(
    name: "sub"
    max_batch_size: 4
    input { name: "other" data_type: TYPE_FP32 dims: 2 }
    input { name: "a" data_type: TYPE_FP32 dims: 2 }
    output { name: "diff" data_type: TYPE_FP32 dims: 2 })pb"));
  // "other" is forward()'s a and "a" its b: the config's order, not the names.
  const std::vector<Tensor> out =
      MustForward(*model, {In("other", {2, 2}, kB), In("a", {2, 2}, kA)});
  REQUIRE(out.size() == 1);
  CHECK(Floats(out[0]) == std::vector<float>{9, 18, 27, 36});
}

TEST_CASE("bindings that cannot work are refused at load, naming the tensor or argument",
          "[torch][binding]") {
  TempDir tmp;
  const std::string path = WriteModule(tmp, kSubtract);
  const auto config = [](const std::string& inputs) {
    return "name: \"sub\" max_batch_size: 4 " + inputs +
           " output { name: \"y\" data_type: TYPE_FP32 dims: 2 }";
  };
  SECTION("an index past forward()'s arguments") {
    CHECK_THAT(LoadError(Spec(path, config(R"pb(
                                input { name: "INPUT__0" data_type: TYPE_FP32 dims: 2 }
                                input { name: "INPUT__2" data_type: TYPE_FP32 dims: 2 })pb"))),
               Contains("input 'INPUT__2' is bound to argument 2 of forward(a, b), which takes 2"));
  }
  SECTION("two inputs with one index") {
    CHECK_THAT(LoadError(Spec(path, config(R"pb(
                                input { name: "X__0" data_type: TYPE_FP32 dims: 2 }
                                input { name: "Y__0" data_type: TYPE_FP32 dims: 2 })pb"))),
               Contains("inputs 'X__0' and 'Y__0' are both bound to argument 0 (a)"));
  }
  SECTION("an argument without a default left unbound") {
    CHECK_THAT(LoadError(Spec(path, config(R"pb(
                                input { name: "a" data_type: TYPE_FP32 dims: 2 })pb"))),
               Contains("argument 'b' of forward(a, b) has no default"));
  }
  SECTION("more inputs than forward() takes, in the config's order") {
    CHECK_THAT(LoadError(Spec(path, config(R"pb(
                                input { name: "x" data_type: TYPE_FP32 dims: 2 }
                                input { name: "y" data_type: TYPE_FP32 dims: 2 }
                                input { name: "z" data_type: TYPE_FP32 dims: 2 })pb"))),
               Contains("input 'z' is bound to argument 2 of forward(a, b), which takes 2"));
  }
  SECTION("an unbound argument with a default before a bound one") {
    const std::string defaults = WriteModule(tmp, R"(
def forward(self, a, scale: float = 2.0, b: Optional[Tensor] = None):
    return a * scale
)");
    CHECK_THAT(LoadError(Spec(defaults, config(R"pb(
                                input { name: "a" data_type: TYPE_FP32 dims: 2 }
                                input { name: "b" data_type: TYPE_FP32 dims: 2 })pb"))),
               Contains("argument 'scale' of forward(a, scale=..., b=...) is bound to no input, "
                        "but a later argument is"));
  }
  SECTION("an input bound to an argument that is not a tensor") {
    const std::string defaults = WriteModule(tmp, R"(
def forward(self, a, scale: float = 2.0):
    return a * scale
)");
    CHECK_THAT(LoadError(Spec(defaults, config(R"pb(
                                input { name: "a" data_type: TYPE_FP32 dims: 2 }
                                input { name: "scale" data_type: TYPE_FP32 dims: 2 })pb"))),
               Contains("input 'scale' is bound to argument 'scale' of forward(a, scale=...), "
                        "which is a float, not a Tensor"));
  }
}

TEST_CASE("trailing arguments left unbound keep their defaults", "[torch][binding]") {
  TempDir tmp;
  std::unique_ptr<TorchModel> model =
      MustLoad(Spec(WriteModule(tmp, R"(
def forward(self, a, scale: float = 2.0, b: Optional[Tensor] = None):
    if b is None:
        return a * scale
    return a * scale + b
)"),
                    R"pb(
                      name: "scaled"
                      max_batch_size: 4
                      input { name: "a" data_type: TYPE_FP32 dims: 2 }
                      output { name: "y" data_type: TYPE_FP32 dims: 2 })pb"));
  const std::vector<Tensor> out = MustForward(*model, {In("a", {2, 2}, kA)});
  REQUIRE(out.size() == 1);
  CHECK(Floats(out[0]) == std::vector<float>{2, 4, 6, 8});
}

// b takes None (and has no default); c has a default (1.0) and takes no None.
constexpr char kOptional[] = R"(
def forward(self, a, b: Optional[Tensor], c: Union[Tensor, float] = 1.0):
    s = a * 100.0
    if b is not None:
        s = a - b
    if isinstance(c, float):
        return s + c
    return s + c
)";

constexpr char kOptionalConfig[] = R"pb(
  name: "optional"
  max_batch_size: 4
  input { name: "a" data_type: TYPE_FP32 dims: 2 }
  input { name: "b" data_type: TYPE_FP32 dims: 2 optional: true }
  input { name: "c" data_type: TYPE_FP32 dims: 2 optional: true }
  output { name: "y" data_type: TYPE_FP32 dims: 2 })pb";

TEST_CASE("an optional input left out reaches forward() as its default, else None",
          "[torch][binding]") {
  TempDir tmp;
  std::unique_ptr<TorchModel> model = MustLoad(Spec(WriteModule(tmp, kOptional), kOptionalConfig));
  const std::vector<float> zeros = {0, 0, 0, 0};
  // All given, then b left out (None), then c left out (its default, ones), then both.
  CHECK(Floats(MustForward(
            *model, {In("a", {2, 2}, kA), In("b", {2, 2}, kB), In("c", {2, 2}, zeros)})[0]) ==
        std::vector<float>{-9, -18, -27, -36});
  CHECK(Floats(MustForward(*model, {In("a", {2, 2}, kA), In("c", {2, 2}, zeros)})[0]) ==
        std::vector<float>{100, 200, 300, 400});
  CHECK(Floats(MustForward(*model, {In("a", {2, 2}, kA), In("b", {2, 2}, kB)})[0]) ==
        std::vector<float>{-8, -17, -26, -35});
  CHECK(Floats(MustForward(*model, {In("a", {2, 2}, kA)})[0]) ==
        std::vector<float>{101, 201, 301, 401});
  // A required input is never left out, and inputs keep the config's order.
  const absl::StatusOr<std::vector<Tensor>> missing = model->Forward({In("b", {2, 2}, kB)});
  CHECK_THAT(std::string(missing.status().message()), Contains("forward needs input 'a'"));
  const absl::StatusOr<std::vector<Tensor>> reordered =
      model->Forward({In("a", {2, 2}, kA), In("c", {2, 2}, zeros), In("b", {2, 2}, kB)});
  CHECK_THAT(std::string(reordered.status().message()),
             Contains("input 'b' is none of the config's inputs, or out of their order"));
}

TEST_CASE("an optional input bound to an argument that cannot be None is refused at load",
          "[torch][binding]") {
  TempDir tmp;
  CHECK_THAT(LoadError(Spec(WriteModule(tmp, kSubtract), R"pb(
               name: "optional"
               max_batch_size: 4
               input { name: "a" data_type: TYPE_FP32 dims: 2 }
               input { name: "b" data_type: TYPE_FP32 dims: 2 optional: true }
               output { name: "y" data_type: TYPE_FP32 dims: 2 })pb")),
             Contains("input 'b' is optional, but argument 'b' of forward(a, b) takes no None "
                      "and has no default: declare it Optional[Tensor] (= None)"));
}

TEST_CASE("warmup settles every shape with each combination of optional inputs left out too",
          "[torch][binding][warmup]") {
  TempDir tmp;
  // The probe runs only on the path where b is None.
  const std::string path = WriteModule(tmp, R"(
def forward(self, a, b: Optional[Tensor] = None):
    if b is None:
        return kiln_binding_test.probe(a)
    return a - b
)");
  std::unique_ptr<TorchModel> model = MustLoad(Spec(path, R"pb(
    name: "optional"
    max_batch_size: 4
    input { name: "a" data_type: TYPE_FP32 dims: 2 }
    input { name: "b" data_type: TYPE_FP32 dims: 2 optional: true }
    output { name: "y" data_type: TYPE_FP32 dims: 2 }
    warmup {
      batch_sizes: [ 1, 4 ]
      calls_per_shape: 3
      max_calls_per_shape: 3
      settle_tolerance: 1
      steady_calls: 1
    })pb"));
  probe_seen = ProbeSeen{};
  const absl::StatusOr<WarmupOutcome> outcome = RunWarmup(*model, WarmupOptions{});
  INFO(outcome.status().message());
  REQUIRE(outcome.ok());
  REQUIRE(outcome->shapes.size() == 2);
  // Each shape settled on both paths: 3 calls each with b, 3 without it (the probe's).
  CHECK(outcome->shapes[0].calls() == 3);
  CHECK(probe_seen.calls == 2 * 3);
}

constexpr char kThree[] = R"(
def forward(self, x):
    return (x + 1.0, x * 2.0, -x)
)";

TEST_CASE("outputs named <name>__<index> are the tuple's element <index>", "[torch][binding]") {
  TempDir tmp;
  const std::string path = WriteModule(tmp, kThree);
  SECTION("picked out of order") {
    std::unique_ptr<TorchModel> model = MustLoad(Spec(path, R"pb(
      name: "three"
      max_batch_size: 4
      input { name: "x" data_type: TYPE_FP32 dims: 2 }
      output { name: "OUTPUT__2" data_type: TYPE_FP32 dims: 2 }
      output { name: "OUTPUT__0" data_type: TYPE_FP32 dims: 2 })pb"));
    const std::vector<Tensor> out = MustForward(*model, {In("x", {2, 2}, kA)});
    REQUIRE(out.size() == 2);
    CHECK(out[0].name == "OUTPUT__2");
    CHECK(Floats(out[0]) == std::vector<float>{-1, -2, -3, -4});
    CHECK(out[1].name == "OUTPUT__0");
    CHECK(Floats(out[1]) == std::vector<float>{2, 3, 4, 5});
  }
  SECTION("other names are taken by position") {
    std::unique_ptr<TorchModel> model = MustLoad(Spec(path, R"pb(
      name: "three"
      max_batch_size: 4
      input { name: "x" data_type: TYPE_FP32 dims: 2 }
      output { name: "neg" data_type: TYPE_FP32 dims: 2 }
      output { name: "OUTPUT__0" data_type: TYPE_FP32 dims: 2 }
      output { name: "twice" data_type: TYPE_FP32 dims: 2 })pb"));
    const std::vector<Tensor> out = MustForward(*model, {In("x", {2, 2}, kA)});
    REQUIRE(out.size() == 3);
    CHECK(Floats(out[0]) == std::vector<float>{2, 3, 4, 5});  // element 0, whatever its name
    CHECK(Floats(out[1]) == std::vector<float>{2, 4, 6, 8});
    CHECK(Floats(out[2]) == std::vector<float>{-1, -2, -3, -4});
  }
  SECTION("an index past the result is the model's failure") {
    std::unique_ptr<TorchModel> model = MustLoad(Spec(path, R"pb(
      name: "three"
      max_batch_size: 4
      input { name: "x" data_type: TYPE_FP32 dims: 2 }
      output { name: "OUTPUT__3" data_type: TYPE_FP32 dims: 2 })pb"));
    absl::StatusOr<std::vector<Tensor>> out = model->Forward({In("x", {2, 2}, kA)});
    REQUIRE_FALSE(out.ok());
    CHECK(out.status().code() == absl::StatusCode::kInternal);
    CHECK_THAT(std::string(out.status().message()),
               Contains("three: output 'OUTPUT__3' is element 3 of forward()'s result, which "
                        "has 3"));
  }
  SECTION("two outputs with one index are refused at load") {
    CHECK_THAT(LoadError(Spec(path, R"pb(
                 name: "three"
                 max_batch_size: 4
                 input { name: "x" data_type: TYPE_FP32 dims: 2 }
                 output { name: "A__1" data_type: TYPE_FP32 dims: 2 }
                 output { name: "B__1" data_type: TYPE_FP32 dims: 2 })pb")),
               Contains(path + ": outputs 'A__1' and 'B__1' are both element 1"));
  }
}

TEST_CASE("a dict result gives each output under its name as the key", "[torch][binding]") {
  TempDir tmp;
  const std::string path = WriteModule(tmp, R"(
def forward(self, x):
    return {"sum": x + 1.0, "neg": -x}
)");
  SECTION("in the config's order") {
    std::unique_ptr<TorchModel> model = MustLoad(Spec(path, R"pb(
      name: "dict"
      max_batch_size: 4
      input { name: "x" data_type: TYPE_FP32 dims: 2 }
      output { name: "neg" data_type: TYPE_FP32 dims: 2 }
      output { name: "sum" data_type: TYPE_FP32 dims: 2 })pb"));
    const std::vector<Tensor> out = MustForward(*model, {In("x", {2, 2}, kA)});
    REQUIRE(out.size() == 2);
    CHECK(out[0].name == "neg");
    CHECK(Floats(out[0]) == std::vector<float>{-1, -2, -3, -4});
    CHECK(out[1].name == "sum");
    CHECK(Floats(out[1]) == std::vector<float>{2, 3, 4, 5});
  }
  SECTION("a missing key is the model's failure, naming it") {
    std::unique_ptr<TorchModel> model = MustLoad(Spec(path, R"pb(
      name: "dict"
      max_batch_size: 4
      input { name: "x" data_type: TYPE_FP32 dims: 2 }
      output { name: "product" data_type: TYPE_FP32 dims: 2 })pb"));
    absl::StatusOr<std::vector<Tensor>> out = model->Forward({In("x", {2, 2}, kA)});
    REQUIRE_FALSE(out.ok());
    CHECK(out.status().code() == absl::StatusCode::kInternal);
    CHECK_THAT(std::string(out.status().message()),
               Contains("dict: forward() returned a dict without the key 'product'"));
  }
}

// forward() takes [batch, 2, 3] and returns [batch, 2]: it fails on any other input rank.
constexpr char kRowSums[] = R"(
def forward(self, x):
    return x.sum(2)
)";

TEST_CASE("reshape gives forward() reshape.shape and the client dims, batch kept in front",
          "[torch][reshape]") {
  TempDir tmp;
  const std::string path = WriteModule(tmp, kRowSums);
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 50, 60};
  SECTION("with a batch dimension, -1 inferred") {
    std::unique_ptr<TorchModel> model = MustLoad(Spec(path, R"pb(
      name: "sums"
      max_batch_size: 4
      input {
        name: "x"
        data_type: TYPE_FP32
        dims: 6
        reshape { shape: [ -1, 3 ] }
      }
      output {
        name: "y"
        data_type: TYPE_FP32
        dims: [ 1, 2 ]
        reshape { shape: 2 }
      })pb"));
    const std::vector<Tensor> out = MustForward(*model, {In("x", {2, 6}, x)});
    REQUIRE(out.size() == 1);
    CHECK(out[0].shape == std::vector<int64_t>{2, 1, 2});
    CHECK(Floats(out[0]) == std::vector<float>{6, 15, 60, 150});
  }
  SECTION("without a batch dimension") {
    std::unique_ptr<TorchModel> model = MustLoad(Spec(path, R"pb(
      name: "sums"
      max_batch_size: 0
      input {
        name: "x"
        data_type: TYPE_FP32
        dims: 12
        reshape { shape: [ 2, 2, 3 ] }
      }
      output {
        name: "y"
        data_type: TYPE_FP32
        dims: 4
        reshape { shape: [ 2, 2 ] }
      })pb"));
    const std::vector<Tensor> out = MustForward(*model, {In("x", {12}, x)});
    REQUIRE(out.size() == 1);
    CHECK(out[0].shape == std::vector<int64_t>{4});
    CHECK(Floats(out[0]) == std::vector<float>{6, 15, 60, 150});
  }
  SECTION("without reshape forward() gets dims, and this one fails") {
    std::unique_ptr<TorchModel> model = MustLoad(Spec(path, R"pb(
      name: "sums"
      max_batch_size: 4
      input { name: "x" data_type: TYPE_FP32 dims: 6 }
      output { name: "y" data_type: TYPE_FP32 dims: 2 })pb"));
    absl::StatusOr<std::vector<Tensor>> out = model->Forward({In("x", {2, 6}, x)});
    REQUIRE_FALSE(out.ok());
    CHECK(out.status().code() == absl::StatusCode::kInternal);
  }
  SECTION("a reshape with two -1s is refused at load") {
    CHECK_THAT(LoadError(Spec(path, R"pb(
                 name: "sums"
                 max_batch_size: 4
                 input {
                   name: "x"
                   data_type: TYPE_FP32
                   dims: 6
                   reshape { shape: [ -1, -1 ] }
                 }
                 output { name: "y" data_type: TYPE_FP32 dims: 2 })pb")),
               Contains(path + ": input 'x' is reshaped to reshape [-1, -1]"));
  }
}

constexpr char kProbe[] = R"(
def forward(self, x):
    return kiln_binding_test.probe(x)
)";

TEST_CASE("forward() runs under the config's torch options, restored after it", "[torch][jit]") {
  TempDir tmp;
  const std::string path = WriteModule(tmp, kProbe);
  const bool executor = torch::jit::getExecutorMode();
  const bool profiling = torch::jit::getProfilingMode();
  const bool fuser = torch::jit::tensorExprFuserEnabled();
  const bool optimize = torch::jit::getGraphExecutorOptimize();
  const std::string io = R"pb(
    name: "probe"
    max_batch_size: 4
    input { name: "x" data_type: TYPE_FP32 dims: 2 }
    output { name: "y" data_type: TYPE_FP32 dims: 2 }
  )pb";
  SECTION("inference_mode on, the JIT switches all off") {
    std::unique_ptr<TorchModel> model = MustLoad(Spec(path, io + R"pb(
      torch {
        inference_mode: true
        disable_optimized_execution: true
        jit_executor: false
        jit_profiling: false
        tensor_fuser: false
      })pb"));
    probe_seen = ProbeSeen{};
    const std::vector<Tensor> out = MustForward(*model, {In("x", {2, 2}, kA)});
    CHECK(Floats(out[0]) == kA);
    REQUIRE(probe_seen.calls == 1);
    CHECK(probe_seen.inference_mode);
    CHECK_FALSE(probe_seen.grad_enabled);
    CHECK_FALSE(probe_seen.jit_executor);
    CHECK_FALSE(probe_seen.jit_profiling);
    CHECK_FALSE(probe_seen.tensor_fuser);
    CHECK_FALSE(probe_seen.graph_optimize);
  }
  SECTION("the defaults: NoGradGuard, the JIT switches all on") {
    std::unique_ptr<TorchModel> model = MustLoad(Spec(path, io));
    probe_seen = ProbeSeen{};
    for (int call = 0; call < 3; ++call) MustForward(*model, {In("x", {2, 2}, kA)});
    REQUIRE(probe_seen.calls == 3);
    CHECK_FALSE(probe_seen.inference_mode);
    CHECK_FALSE(probe_seen.grad_enabled);
    CHECK(probe_seen.jit_executor);
    CHECK(probe_seen.jit_profiling);
    CHECK(probe_seen.tensor_fuser);
    CHECK(probe_seen.graph_optimize);
  }
  CHECK(torch::jit::getExecutorMode() == executor);
  CHECK(torch::jit::getProfilingMode() == profiling);
  CHECK(torch::jit::tensorExprFuserEnabled() == fuser);
  CHECK(torch::jit::getGraphExecutorOptimize() == optimize);
  CHECK_FALSE(c10::InferenceMode::is_enabled());
}

}  // namespace
}  // namespace kiln
