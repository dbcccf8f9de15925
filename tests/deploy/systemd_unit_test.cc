// Proves deploy/systemd/kiln-server.service is a unit systemd accepts without a warning
// (systemd-analyze verify, on a copy that starts the built kiln-server), and that it keeps what
// kiln relies on: a stop timeout longer than the drain, notify and watchdog, and a sandbox that
// still lets kiln read its models and write its state and port lock.
#include <catch2/catch.hpp>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/deploy/deploy_files.h"
#include "tests/run_command.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::CommandResult;
using kiln::testing::ReadSourceFile;
using kiln::testing::TempDir;

const char kUnit[] = "deploy/systemd/kiln-server.service";
const char kInstalledBinary[] = "/usr/local/bin/kiln-server";

// The [Service] section's settings; a setting given more than once keeps its last value, as
// systemd does for the ones checked here.
std::map<std::string, std::string> ServiceSettings(const std::string& unit) {
  std::map<std::string, std::string> settings;
  std::istringstream lines(unit);
  std::string section;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line[0] == '[') {
      section = line;
      continue;
    }
    const size_t eq = line.find('=');
    if (section == "[Service]" && eq != std::string::npos) {
      settings[line.substr(0, eq)] = line.substr(eq + 1);
    }
  }
  return settings;
}

// The value of --name=VALUE in `command`, or `fallback`.
std::string FlagValue(const std::string& command, const std::string& name,
                      const std::string& fallback) {
  const std::regex flag("(^|\\s)--" + name + "=(\\S+)");
  std::smatch match;
  return std::regex_search(command, match, flag) ? match[2].str() : fallback;
}

// Every --name of `command`.
std::vector<std::string> FlagNames(const std::string& command) {
  static const std::regex kFlag(R"((^|\s)--([a-z0-9_]+))");
  std::vector<std::string> names;
  for (std::sregex_iterator it(command.begin(), command.end(), kFlag), end; it != end; ++it) {
    names.push_back((*it)[2]);
  }
  return names;
}

// Seconds of a systemd time span written as N, Ns or Nmin; -1 for anything else.
long Seconds(const std::string& span) {
  std::smatch match;
  static const std::regex kSpan(R"((\d+)\s*(s|sec|min)?)");
  if (!std::regex_match(span, match, kSpan)) return -1;
  const long n = std::stol(match[1]);
  return match[2] == "min" ? n * 60 : n;
}

bool HasWord(const std::string& list, const std::string& word) {
  std::istringstream words(list);
  for (std::string w; words >> w;) {
    if (w == word) return true;
  }
  return false;
}

// What the unit must keep for kiln, one line per promise broken (none: all kept).
std::vector<std::string> ContractProblems(const std::string& unit) {
  std::map<std::string, std::string> s = ServiceSettings(unit);
  std::vector<std::string> problems;
  auto expect = [&](const std::string& key, const std::string& value, const std::string& why) {
    if (s[key] != value) problems.push_back(key + "=" + value + " expected (" + why + ")");
  };
  const std::string exec = s["ExecStart"];
  expect("Type", "notify", "READY=1 is sent only once warm");
  expect("NotifyAccess", "main", "only the master notifies");
  expect("KillMode", "mixed", "TERM to the master alone, which drains");
  expect("ProtectSystem", "strict", "nothing but the state and runtime directories is writable");
  expect("LimitNICE", "+0", "workers return from idle priority without CAP_SYS_NICE");
  if (s["WatchdogSec"].empty() || Seconds(s["WatchdogSec"]) <= 0) {
    problems.push_back("WatchdogSec missing (kiln sends WATCHDOG=1 while it has its quorums)");
  }
  const long drain = std::stol(FlagValue(exec, "drain_timeout_s", "30"));
  const long stop = Seconds(s["TimeoutStopSec"]);
  if (stop <= drain) {
    problems.push_back("TimeoutStopSec=" + s["TimeoutStopSec"] + " must exceed --drain_timeout_s " +
                       std::to_string(drain) + " (systemd SIGKILLs what is left after it)");
  }
  if (s["ExecReload"].find("-HUP $MAINPID") == std::string::npos) {
    problems.push_back("ExecReload must send HUP to $MAINPID (kiln reloads its repository on it)");
  }
  const std::string state_dir = FlagValue(exec, "state_dir", "");
  if (s["StateDirectory"].empty() || state_dir != "/var/lib/" + s["StateDirectory"]) {
    problems.push_back("StateDirectory=" + s["StateDirectory"] + " is not --state_dir " +
                       state_dir + " (the only writable place for the traffic profiles)");
  }
  const std::string lock_dir = FlagValue(exec, "lock_dir", "");
  if (s["RuntimeDirectory"].empty() || lock_dir != "/run/" + s["RuntimeDirectory"]) {
    problems.push_back("RuntimeDirectory=" + s["RuntimeDirectory"] + " is not --lock_dir " +
                       lock_dir + " (where the port lock is written)");
  }
  const std::string repository = FlagValue(exec, "model_repository", "");
  if (repository.empty() || !HasWord(s["ReadOnlyPaths"], repository)) {
    problems.push_back("ReadOnlyPaths=" + s["ReadOnlyPaths"] +
                       " does not hold --model_repository " + repository);
  }
  if (!HasWord(s["RestrictAddressFamilies"], "AF_UNIX")) {
    problems.push_back(
        "RestrictAddressFamilies must allow AF_UNIX (the master, zygote and "
        "workers talk over socketpairs)");
  }
  if (s["MemoryDenyWriteExecute"] == "yes" || s["MemoryDenyWriteExecute"] == "true") {
    problems.push_back("MemoryDenyWriteExecute breaks LibTorch's run-time code generation");
  }
  if (s["MemoryMax"].empty()) {
    problems.push_back("MemoryMax missing (kiln sizes its memory budget to the cgroup's limit)");
  }
  if (s["Environment"].find("OMP_WAIT_POLICY=PASSIVE") == std::string::npos) {
    problems.push_back("Environment=OMP_WAIT_POLICY=PASSIVE missing");
  }
  return problems;
}

// The unit with its installed binary path replaced by `binary`, as kiln-server.service in `dir`:
// verify refuses an ExecStart whose executable does not exist.
std::string WriteUnitCopy(const TempDir& dir, std::string unit, const std::string& binary) {
  unit = kiln::testing::ReplaceOnce(unit, std::string("ExecStart=") + kInstalledBinary,
                                    "ExecStart=" + binary);
  return dir.WriteFile("kiln-server.service", unit);
}

CommandResult Verify(const std::string& unit_path) {
  return kiln::testing::RunCommand("systemd-analyze verify '" + unit_path + "'");
}

// systemd-analyze exits 0 on mere warnings (an unknown key, a value it cannot parse, ignored):
// any output at all is a warning here.
bool Clean(const CommandResult& result) {
  return result.exit_code == 0 && result.output.find_first_not_of(" \n") == std::string::npos;
}

TEST_CASE("systemd-analyze verify accepts the kiln-server unit without a warning", "[deploy]") {
  const TempDir dir;
  const CommandResult result =
      Verify(WriteUnitCopy(dir, ReadSourceFile(kUnit), KILN_SERVER_BINARY));
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK(Clean(result));
}

TEST_CASE("systemd-analyze verify reports a misspelled directive and a missing executable",
          "[deploy]") {
  const TempDir dir;
  const std::string unit = ReadSourceFile(kUnit);

  const std::string misspelled =
      kiln::testing::ReplaceOnce(unit, "\nProtectSystem=strict\n", "\nProtectSytem=strict\n");
  const CommandResult warned = Verify(WriteUnitCopy(dir, misspelled, KILN_SERVER_BINARY));
  INFO(warned.output);
  CHECK_THAT(warned.output, Contains("Unknown key") && Contains("ProtectSytem"));
  CHECK_FALSE(Clean(warned));

  const CommandResult missing = Verify(WriteUnitCopy(dir, unit, dir.path() + "/no-kiln-server"));
  INFO(missing.output);
  CHECK(missing.exit_code != 0);
  CHECK_THAT(missing.output, Contains("is not executable"));
}

TEST_CASE("the kiln-server unit keeps what kiln relies on", "[deploy]") {
  const std::vector<std::string> problems = ContractProblems(ReadSourceFile(kUnit));
  for (const std::string& problem : problems) FAIL_CHECK(problem);
  CHECK(problems.empty());
}

TEST_CASE("the unit's contract check catches each broken promise", "[deploy]") {
  struct Case {
    std::string from, to, expected;
  };
  const std::vector<Case> cases = {
      {"\nTimeoutStopSec=45\n", "\nTimeoutStopSec=30\n", "TimeoutStopSec=30 must exceed"},
      {" --port=8001", " --port=8001 --drain_timeout_s=60", "must exceed --drain_timeout_s 60"},
      {"\nType=notify\n", "\nType=simple\n", "Type=notify expected"},
      {"\nWatchdogSec=30\n", "\n", "WatchdogSec missing"},
      {"\nProtectSystem=strict\n", "\nProtectSystem=full\n", "ProtectSystem=strict expected"},
      {"\nStateDirectory=kiln\n", "\nStateDirectory=kiln-state\n", "StateDirectory=kiln-state"},
      {"\nRuntimeDirectory=kiln\n", "\nRuntimeDirectory=kiln-run\n", "RuntimeDirectory=kiln-run"},
      {"\nReadOnlyPaths=/srv/kiln/models\n", "\nReadOnlyPaths=/srv/other\n", "ReadOnlyPaths"},
      {"=AF_UNIX AF_INET AF_INET6\n", "=AF_INET AF_INET6\n", "must allow AF_UNIX"},
      {"\nExecReload=", "\n#ExecReload=", "ExecReload must send HUP"},
      {"\nLockPersonality=yes\n", "\nLockPersonality=yes\nMemoryDenyWriteExecute=yes\n",
       "MemoryDenyWriteExecute"},
      {"\nMemoryMax=4G\n", "\n", "MemoryMax missing"},
  };
  const std::string unit = ReadSourceFile(kUnit);
  for (const Case& c : cases) {
    INFO("changed: " << c.from << " -> " << c.to);
    std::ostringstream found;
    for (const std::string& problem :
         ContractProblems(kiln::testing::ReplaceOnce(unit, c.from, c.to))) {
      found << problem << "\n";
    }
    CHECK_THAT(found.str(), Contains(c.expected));
  }
}

TEST_CASE("every flag the unit passes is one kiln-server accepts", "[deploy]") {
  const std::set<std::string> known = kiln::testing::KilnServerFlags(KILN_SERVER_BINARY);
  const std::vector<std::string> used =
      FlagNames(ServiceSettings(ReadSourceFile(kUnit))["ExecStart"]);
  REQUIRE(used.size() >= 5);
  for (const std::string& name : used) {
    INFO("--" << name);
    CHECK(known.count(name) == 1);
  }
}

}  // namespace
}  // namespace kiln
