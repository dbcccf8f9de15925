// The SentencePiece tokenizer behind its dlopen'd shim. This binary links LibTorch (through
// kiln_worker) and gRPC + libprotobuf on purpose: docs/ARCHITECTURE.md requires that such a process
// starts and encodes, which linking libsentencepiece directly would break.
#include "worker/tokenizer.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/fork_safety.h"
#include "common/model_config_loader.h"
#include "common/safetensors.h"
#include "proto/grpc_service.pb.h"
#include "tests/run_command.h"
#include "tests/test_paths.h"
#include "worker/torch_model.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::ModelsDir;
using kiln::testing::RunCommand;
using kiln::testing::TempDir;

ModelSpec DemoSpec(const std::string& name) {
  absl::StatusOr<ModelSpec> spec = LoadModel(ModelsDir() + "/" + name);
  if (!spec.ok()) FAIL("cannot load demo model " << name << ": " << spec.status().message());
  return *spec;
}

// textcls's tokenizer.model, as its config names it.
std::string TextclsTokenizerPath() {
  const std::string path = DemoSpec("textcls").tokenizer_path;
  REQUIRE_FALSE(path.empty());
  return path;
}

// The __metadata__ of textcls's reference.safetensors (texts and vocab_size from make_models.py).
std::map<std::string, std::string> TextclsMetadata() {
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> file =
      MappedSafetensors::Open(DemoSpec("textcls").version_dir + "/reference.safetensors");
  if (!file.ok()) FAIL(file.status().message());
  return (*file)->index().metadata();
}

std::string MetadataValue(const std::map<std::string, std::string>& metadata,
                          const std::string& key) {
  auto it = metadata.find(key);
  if (it == metadata.end()) FAIL("reference.safetensors metadata has no '" << key << "'");
  return it->second;
}

std::unique_ptr<Tokenizer> LoadTextclsTokenizer() {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(TextclsTokenizerPath());
  if (!tokenizer.ok()) FAIL(tokenizer.status().message());
  return *std::move(tokenizer);
}

std::vector<int32_t> EncodeOrFail(const Tokenizer& tokenizer, absl::string_view text) {
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text);
  if (!ids.ok()) FAIL(ids.status().message());
  return *std::move(ids);
}

// The ids Debian's `spm_encode --output_format=id` prints for each text (one text per line, so
// none may contain a newline).
std::vector<std::vector<int32_t>> SpmEncode(const std::string& model,
                                            const std::vector<std::string>& texts) {
  TempDir dir;
  std::string input;
  for (const std::string& text : texts) {
    REQUIRE(text.find('\n') == std::string::npos);
    input += text + "\n";
  }
  const std::string input_path = dir.WriteFile("input.txt", input);
  const kiln::testing::CommandResult result =
      RunCommand("spm_encode --model='" + model + "' --output_format=id < '" + input_path + "'");
  INFO("spm_encode said: " << result.output);
  REQUIRE(result.exit_code == 0);
  std::vector<std::vector<int32_t>> rows;
  std::istringstream lines(result.output);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream tokens(line);
    std::vector<int32_t> row;
    int32_t id;
    while (tokens >> id) row.push_back(id);
    REQUIRE(tokens.eof());  // every token of the line was an id
    rows.push_back(row);
  }
  REQUIRE(rows.size() == texts.size());
  return rows;
}

TEST_CASE("Loading a tokenizer starts no thread (it runs in the master before fork)") {
  // First in this file: a later test creates gRPC objects, which start threads.
  REQUIRE(CountThreads() == 1);
  std::unique_ptr<Tokenizer> tokenizer = LoadTextclsTokenizer();
  CHECK(CountThreads() == 1);
  CHECK(EncodeOrFail(*tokenizer, "hello world").size() > 0);
  CHECK(CountThreads() == 1);
}

TEST_CASE("The shim is looked for in $KILN_SPM_SHIM, else beside the executable, else the build") {
  const char* saved = std::getenv("KILN_SPM_SHIM");
  const std::string saved_value = saved != nullptr ? saved : "";

  unsetenv("KILN_SPM_SHIM");
  std::string exe(4096, '\0');
  const ssize_t n = readlink("/proc/self/exe", exe.data(), exe.size());
  REQUIRE(n > 0);
  exe.resize(static_cast<size_t>(n));
  const std::string exe_dir = exe.substr(0, exe.rfind('/'));
  CHECK(SpmShimCandidates() ==
        std::vector<std::string>{exe_dir + "/libkiln_spm_shim.so", KILN_TEST_SPM_SHIM});

  setenv("KILN_SPM_SHIM", "", 1);  // empty counts as unset
  CHECK(SpmShimCandidates().size() == 2);

  setenv("KILN_SPM_SHIM", "/opt/elsewhere/libshim.so", 1);
  CHECK(SpmShimCandidates() == std::vector<std::string>{"/opt/elsewhere/libshim.so"});

  if (saved != nullptr) {
    setenv("KILN_SPM_SHIM", saved_value.c_str(), 1);
  } else {
    unsetenv("KILN_SPM_SHIM");
  }
}

TEST_CASE("A shim that cannot be loaded is an error naming every path tried and why") {
  TempDir dir;
  const std::string missing = dir.path() + "/missing/libkiln_spm_shim.so";
  const std::string not_elf =
      dir.WriteFile("libnot_elf.so", std::string(256, 'x') + "\nnot a shared object\n");
  // A real library that lacks the shim's API (already loaded: LibTorch needs it).
  const std::string wrong_library = "libm.so.6";

  absl::StatusOr<const SpmShim*> shim = OpenSpmShim({missing, not_elf, wrong_library});
  REQUIRE_FALSE(shim.ok());
  CHECK(shim.status().code() == absl::StatusCode::kFailedPrecondition);
  const std::string message(shim.status().message());
  CHECK_THAT(message, Contains(missing) && Contains("No such file or directory"));
  CHECK_THAT(message, Contains(not_elf) && Contains("invalid ELF header"));
  CHECK_THAT(message, Contains(wrong_library + ": does not export kiln_spm_abi_version"));
  CHECK_THAT(message, Contains("KILN_SPM_SHIM"));

  SECTION("a later candidate that works is used") {
    absl::StatusOr<const SpmShim*> found = OpenSpmShim({missing, KILN_TEST_SPM_SHIM});
    CHECK(found.ok());
  }
}

TEST_CASE("A process with LibTorch and gRPC loads the tokenizer and encodes like spm_encode") {
  // gRPC and libprotobuf.so.32 in use before the shim is loaded ...
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  REQUIRE(channel != nullptr);
  inference::ModelInferRequest request;
  request.set_model_name("textcls");
  std::string wire;
  REQUIRE(request.SerializeToString(&wire));
  // ... and LibTorch, with a TorchScript model loaded.
  absl::StatusOr<std::unique_ptr<TorchModel>> model = TorchModel::Load(DemoSpec("mlp"));
  if (!model.ok()) FAIL(model.status().message());

  std::unique_ptr<Tokenizer> tokenizer = LoadTextclsTokenizer();
  const std::map<std::string, std::string> metadata = TextclsMetadata();
  const std::vector<std::string> texts = {MetadataValue(metadata, "text.0"),
                                          MetadataValue(metadata, "text.1")};
  const std::vector<std::vector<int32_t>> expected = SpmEncode(TextclsTokenizerPath(), texts);
  for (size_t i = 0; i < texts.size(); ++i) {
    INFO("text." << i << ": " << texts[i]);
    CHECK(EncodeOrFail(*tokenizer, texts[i]) == expected[i]);
  }

  // libprotobuf still works with sentencepiece's private copy in the process.
  inference::ModelInferRequest parsed;
  REQUIRE(parsed.ParseFromString(wire));
  CHECK(parsed.model_name() == "textcls");
}

TEST_CASE("vocab_size is the model's vocabulary and bounds every id") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTextclsTokenizer();
  CHECK(std::to_string(tokenizer->vocab_size()) == MetadataValue(TextclsMetadata(), "vocab_size"));
  for (int32_t id : EncodeOrFail(*tokenizer, MetadataValue(TextclsMetadata(), "text.1"))) {
    CHECK(id >= 0);
    CHECK(id < tokenizer->vocab_size());
  }
}

TEST_CASE("Empty text gives no ids") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTextclsTokenizer();
  CHECK(EncodeOrFail(*tokenizer, "").empty());
  CHECK(EncodeOrFail(*tokenizer, absl::string_view()).empty());
}

TEST_CASE("A long text encodes completely, beyond the first buffer") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTextclsTokenizer();
  const std::string sentence = MetadataValue(TextclsMetadata(), "text.1");
  std::string text = sentence;
  while (text.size() < 20 * sentence.size()) text += " " + sentence;

  const std::vector<int32_t> ids = EncodeOrFail(*tokenizer, text);
  CHECK(ids.size() > Tokenizer::kInitialIdCapacity);
  CHECK(ids == SpmEncode(TextclsTokenizerPath(), {text})[0]);
}

TEST_CASE("Encode is safe to call from several threads at once") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTextclsTokenizer();
  const std::string text = MetadataValue(TextclsMetadata(), "text.1");
  const std::vector<int32_t> expected = EncodeOrFail(*tokenizer, text);
  constexpr int kThreads = 4;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(text);
        if (!ids.ok() || *ids != expected) ++mismatches[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(mismatches == std::vector<int>(kThreads, 0));
}

TEST_CASE("A missing or invalid model file is an error naming the file") {
  TempDir dir;
  SECTION("missing") {
    const std::string path = dir.path() + "/no_such_tokenizer.model";
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(path);
    REQUIRE_FALSE(tokenizer.ok());
    CHECK(tokenizer.status().code() == absl::StatusCode::kNotFound);
    CHECK_THAT(std::string(tokenizer.status().message()), Contains(path));
  }
  SECTION("not a SentencePiece model") {
    const std::string path = dir.WriteFile("garbage.model", "this is not a model proto\n");
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(path);
    REQUIRE_FALSE(tokenizer.ok());
    CHECK_THAT(std::string(tokenizer.status().message()), Contains(path));
  }
}

}  // namespace
}  // namespace kiln
