#include "tests/test_paths.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace kiln::testing {

std::string ModelsDir() {
  const char* env = std::getenv("KILN_MODELS_DIR");
  return env != nullptr && *env != '\0' ? env : KILN_TEST_MODELS_DIR;
}

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/kiln-test-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed: " + pattern);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::WriteFile(const std::string& relative, const std::string& contents) const {
  std::filesystem::path full = std::filesystem::path(path_) / relative;
  std::filesystem::create_directories(full.parent_path());
  std::ofstream out(full, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  if (!out) throw std::runtime_error("cannot write " + full.string());
  return full.string();
}

std::string OneDemoModelRepository(const TempDir& dir, const std::string& model) {
  namespace fs = std::filesystem;
  const fs::path source = fs::path(ModelsDir()) / model;
  const fs::path target = fs::path(dir.path()) / "repo" / model;
  fs::create_directories(target / "1");
  for (const char* file : {"config.pbtxt", "kiln.pbtxt"}) {
    if (fs::exists(source / file)) fs::create_symlink(source / file, target / file);
  }
  for (const fs::directory_entry& file : fs::directory_iterator(source / "1")) {
    fs::create_symlink(file.path(), target / "1" / file.path().filename());
  }
  return (fs::path(dir.path()) / "repo").string();
}

}  // namespace kiln::testing
