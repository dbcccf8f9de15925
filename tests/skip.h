// KILN_SKIP(reason): ends the running test case (returns from the TEST_CASE body) as skipped,
// for what cannot run on this machine (no cgroup to make, no right to return from idle
// priority, ...). The reason is streamed like WARN's: KILN_SKIP("no cgroup: " << why).
//
// At the end of the case, if none of its assertions failed, test_main.cc's listener prints
// "KILN_SKIPPED: <reason>" on stdout, and CTest reports the entry as Skipped (kiln_test() sets
// SKIP_REGULAR_EXPRESSION to that marker). A case that failed an assertion before skipping prints
// no marker and fails. What ran before the skip is asserted as usual: skip only the part that
// cannot run. Call from the test case's own body (it returns), never from a forked child.
#ifndef KILN_TESTS_SKIP_H_
#define KILN_TESTS_SKIP_H_

#include <sstream>
#include <string>

namespace kiln::testing {

// The line CTest's SKIP_REGULAR_EXPRESSION matches (tests/CMakeLists.txt).
inline constexpr char kSkipMarker[] = "KILN_SKIPPED: ";

// Records that the running test case skips, and why (KILN_SKIP's first half).
void RecordSkip(const std::string& reason);

}  // namespace kiln::testing

#define KILN_SKIP(reason)                                \
  do {                                                   \
    std::ostringstream kiln_skip_reason;                 \
    kiln_skip_reason << reason;                          \
    ::kiln::testing::RecordSkip(kiln_skip_reason.str()); \
    return;                                              \
  } while (false)

#endif  // KILN_TESTS_SKIP_H_
