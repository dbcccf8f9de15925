#include "server/passive_openmp_getenv.h"

#include <stdlib.h>  // NOLINT: the C declaration of getenv that this file defines
#include <string.h>  // NOLINT

#include <atomic>

extern char** environ;

namespace kiln {
namespace {

std::atomic<bool> g_answered_passive{false};
std::atomic<bool> g_answering{true};  // until main() asks what was answered

// The value of `name` in the environment, as glibc's getenv finds it (the first entry).
char* FindInEnvironment(const char* name) {
  if (name == nullptr || environ == nullptr) return nullptr;
  const size_t length = strlen(name);
  if (length == 0 || strchr(name, '=') != nullptr) return nullptr;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (strncmp(*entry, name, length) == 0 && (*entry)[length] == '=') return *entry + length + 1;
  }
  return nullptr;
}

bool Unset(const char* value) { return value == nullptr || *value == '\0'; }

}  // namespace

bool GetenvAnsweredPassiveOpenMpWait() {
  g_answering.store(false);
  return g_answered_passive.load();
}

}  // namespace kiln

// Interposes libc's getenv for the whole process (see the header).
extern "C" char* getenv(const char* name) noexcept {
  char* value = kiln::FindInEnvironment(name);
  if (kiln::g_answering.load() && kiln::Unset(value) && strcmp(name, "OMP_WAIT_POLICY") == 0 &&
      kiln::Unset(kiln::FindInEnvironment("GOMP_SPINCOUNT"))) {
    kiln::g_answered_passive.store(true);
    static char passive[] = "PASSIVE";
    return passive;
  }
  return value;
}
