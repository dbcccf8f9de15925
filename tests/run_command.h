// Runs a shell command for tests that drive kiln's binaries from outside.
#ifndef KILN_TESTS_RUN_COMMAND_H_
#define KILN_TESTS_RUN_COMMAND_H_

#include <functional>
#include <string>

namespace kiln::testing {

struct CommandResult {
  int exit_code = -1;  // -1 when the command did not exit normally
  std::string output;  // stdout and stderr, interleaved
};

// Runs `command` with /bin/sh, waits for it, and captures its combined output.
CommandResult RunCommand(const std::string& command);

// Runs this test binary again in a fresh process, with `environment` ("NAME=value ...", shell
// words) set and only the test cases `test_spec` selects (a hidden "[.][tag]" case, usually):
// for what a process can do only once, or only before something else ran in it.
CommandResult RunThisTestBinary(const std::string& test_spec, const std::string& environment);

// Forks; the child runs `body`, which may write text to its argument, and _exits with what
// `body` returns; the text comes back through a pipe. For what a test changes in a whole process
// (its affinity, cgroup, scheduling policy, process-wide notes) without touching the test
// binary's own. Call from a single-threaded test. exit_code is -1 when the child was killed.
CommandResult RunInChild(const std::function<int(std::string* output)>& body);

}  // namespace kiln::testing

#endif  // KILN_TESTS_RUN_COMMAND_H_
