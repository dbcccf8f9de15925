#include "tests/fuzz/fuzz_expect.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace kiln::fuzz {
namespace {

void RemoveScratchDir() {
  std::error_code ignored;
  std::filesystem::remove_all(ScratchDir(), ignored);
}

}  // namespace

const std::string& ScratchDir() {
  static const std::string* const dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/kiln-fuzz-XXXXXX";
    Expect(::mkdtemp(pattern.data()) != nullptr, "mkdtemp for the scratch directory");
    auto* made = new std::string(pattern);
    std::atexit(RemoveScratchDir);
    return made;
  }();
  return *dir;
}

void WriteScratchFile(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  Expect(out.good(), "writing a scratch file");
}

}  // namespace kiln::fuzz
