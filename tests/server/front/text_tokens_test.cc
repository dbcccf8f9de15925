// TextTokens: the master's count of a text request's tokens, with the demo textcls's real
// SentencePiece model, as the dynamic batcher gets it.
#include "server/front/text_tokens.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/model_config_loader.h"
#include "tests/test_paths.h"
#include "worker/text_batch.h"
#include "worker/tokenizer.h"

namespace kiln {
namespace {

// The demo textcls with dynamic_batching on.
ModelSpec BatchedTextcls() {
  absl::StatusOr<ModelSpec> spec = LoadModel(kiln::testing::ModelsDir() + "/textcls");
  if (!spec.ok()) FAIL("cannot load textcls: " << spec.status().message());
  spec->config.mutable_dynamic_batching()->set_enabled(true);
  return *spec;
}

TEST_CASE("the master counts a batched text request's tokens as the worker will", "[text_tokens]") {
  const ModelSpec spec = BatchedTextcls();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(spec.tokenizer_path);
  REQUIRE(tokenizer.ok());
  const EncodeFn encode = [&](absl::string_view text) { return (*tokenizer)->Encode(text); };
  const std::vector<std::string> texts = {"a short one",
                                          "a rather longer review of the film, which ran long"};
  absl::StatusOr<int32_t> expected = LongestRow(texts, encode, spec.config);
  REQUIRE(expected.ok());
  REQUIRE(*expected > 3);

  TextTokens tokens;
  CHECK(tokens.LongestRow(spec, texts) == *expected);
  CHECK(tokens.LongestRow(spec, {texts[0]}) == *LongestRow({texts[0]}, encode, spec.config));
  // Truncated to max_length, as the worker truncates.
  std::string endless;
  for (int i = 0; i < 400; ++i) endless += "word ";
  CHECK(tokens.LongestRow(spec, {endless}) == spec.config.tokenizer().max_length());
}

TEST_CASE("text is not counted where the model does not batch or its tokenizer cannot load",
          "[text_tokens]") {
  TextTokens tokens;
  ModelSpec spec = BatchedTextcls();
  const std::vector<std::string> texts = {"hello"};
  SECTION("no dynamic_batching") {
    spec.config.mutable_dynamic_batching()->set_enabled(false);
    CHECK(tokens.LongestRow(spec, texts) == -1);
  }
  SECTION("a tokenizer file that is gone (another stamp: loaded afresh)") {
    spec.tokenizer_path = "/nonexistent/tokenizer.model";
    spec.stamp += "-gone";
    CHECK(tokens.LongestRow(spec, texts) == -1);
    CHECK(tokens.LongestRow(spec, texts) == -1);  // not retried, still not counted
  }
  SECTION("a tokenizer the master loaded is used as it is, not loaded again") {
    absl::StatusOr<std::unique_ptr<Tokenizer>> loaded = Tokenizer::Load(spec.tokenizer_path);
    REQUIRE(loaded.ok());
    const int32_t expected = tokens.LongestRow(spec, texts);
    ModelSpec adopted = spec;
    adopted.stamp += "-adopted";
    adopted.tokenizer_path = "/nonexistent/tokenizer.model";  // loading it would fail
    tokens.Adopt(adopted, loaded->get());
    CHECK(tokens.LongestRow(adopted, texts) == expected);
  }
  SECTION("a version's reload (a new stamp) is counted with its own tokenizer") {
    CHECK(tokens.LongestRow(spec, texts) > 0);
    ModelSpec reloaded = spec;
    reloaded.stamp += "-v2";
    CHECK(tokens.LongestRow(reloaded, texts) == tokens.LongestRow(spec, texts));
  }
}

}  // namespace
}  // namespace kiln
