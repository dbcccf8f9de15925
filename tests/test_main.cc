// The one main() shared by every Catch2 test executable, and the listener that reports
// KILN_SKIP (tests/skip.h).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#include <iostream>
#include <string>
#include <vector>

#include "tests/skip.h"

namespace kiln::testing {
namespace {

// The reasons the running test case skipped for (more than one where several sections skip).
std::vector<std::string>& Skips() {
  static std::vector<std::string> skips;
  return skips;
}

// Prints the skip marker once a test case ends, unless one of its assertions failed: a failure
// is never reported as a skip.
class SkipListener : public Catch::TestEventListenerBase {
 public:
  using TestEventListenerBase::TestEventListenerBase;

  void testCaseStarting(const Catch::TestCaseInfo& info) override {
    Skips().clear();
    TestEventListenerBase::testCaseStarting(info);
  }

  void testCaseEnded(const Catch::TestCaseStats& stats) override {
    const bool failed = stats.totals.assertions.failed > 0;
    for (const std::string& reason : Skips()) {
      if (failed) {
        std::cout << "skipped part, not reported as a skip as the case failed: " << reason << "\n";
      } else {
        std::cout << kSkipMarker << reason << "\n";
      }
    }
    std::cout.flush();
    Skips().clear();
    TestEventListenerBase::testCaseEnded(stats);
  }
};

CATCH_REGISTER_LISTENER(SkipListener)

}  // namespace

void RecordSkip(const std::string& reason) {
  // One line, so that the marker's line holds the whole reason.
  std::string line = reason;
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  Skips().push_back(line);
}

}  // namespace kiln::testing
