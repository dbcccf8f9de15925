#include "common/openmp_wait.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace kiln {
namespace {

// The marker's value when libgomp read the policy from kiln-server's getenv.
constexpr char kToldByGetenv[] = "getenv";

// errno of a failed re-exec; 0 when none was tried or it never returned.
int g_exec_errno = 0;

const char* Get(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

}  // namespace

void EnsurePassiveOpenMpWait(char** argv, bool libgomp_told_passive) {
  if (Get("OMP_WAIT_POLICY") != nullptr || Get("GOMP_SPINCOUNT") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  setenv(kOpenMpWaitMarker, libgomp_told_passive ? kToldByGetenv : "1", 1);
  if (libgomp_told_passive) return;
  execv("/proc/self/exe", argv);
  // Still here: this process's libgomp keeps its defaults, so do not claim otherwise.
  g_exec_errno = errno;
  unsetenv("OMP_WAIT_POLICY");
  unsetenv(kOpenMpWaitMarker);
}

std::string DescribeOpenMpWait() {
  if (g_exec_errno != 0) {
    return absl::StrCat(
        "libgomp's default (threads spin 300,000 times before they sleep): "
        "re-executing with OMP_WAIT_POLICY=PASSIVE failed (",
        std::strerror(g_exec_errno), ")");
  }
  const char* policy = Get("OMP_WAIT_POLICY");
  const char* spincount = Get("GOMP_SPINCOUNT");
  const char* marker = Get(kOpenMpWaitMarker);
  if (policy != nullptr && marker != nullptr && absl::string_view(marker) == kToldByGetenv) {
    return absl::StrCat("passive (OMP_WAIT_POLICY=", policy,
                        ", set by kiln before libgomp read it)");
  }
  if (policy != nullptr && marker != nullptr) {
    return absl::StrCat("passive (OMP_WAIT_POLICY=", policy,
                        ", set by kiln: the binary re-executed itself once)");
  }
  std::string settings;
  if (policy != nullptr) absl::StrAppend(&settings, "OMP_WAIT_POLICY=", policy);
  if (spincount != nullptr) {
    absl::StrAppend(&settings, settings.empty() ? "" : " ", "GOMP_SPINCOUNT=", spincount);
  }
  if (settings.empty()) return "libgomp's default (threads spin 300,000 times before they sleep)";
  return absl::StrCat(settings, " from the environment (the operator's setting, kept)");
}

bool OpenMpThreadsSpin() {
  if (g_exec_errno != 0) return true;  // libgomp read its defaults before the failed re-exec
  if (const char* spincount = Get("GOMP_SPINCOUNT")) return absl::string_view(spincount) != "0";
  const char* policy = Get("OMP_WAIT_POLICY");
  return policy == nullptr || !absl::EqualsIgnoreCase(policy, "passive");
}

}  // namespace kiln
