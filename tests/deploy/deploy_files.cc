#include "tests/deploy/deploy_files.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/run_command.h"

namespace kiln::testing {

std::string SourcePath(const std::string& relative) {
  return std::string(KILN_SOURCE_DIR) + "/" + relative;
}

std::string ReadSourceFile(const std::string& relative) {
  const std::string path = SourcePath(relative);
  std::ifstream in(path);
  INFO("reading " << path);
  REQUIRE(in.good());
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

std::string ReplaceOnce(const std::string& text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  INFO("expected to find: " << from);
  REQUIRE(at != std::string::npos);
  std::string replaced = text;
  replaced.replace(at, from.size(), to);
  return replaced;
}

std::set<std::string> KilnServerFlags(const std::string& server_binary) {
  const CommandResult help = RunCommand("'" + server_binary + "' --help");
  INFO(help.output);
  REQUIRE(help.exit_code == 0);
  // gflags lists each flag as "    -name (help text ...".
  static const std::regex kFlag(R"(^\s+-([a-z0-9_]+) \()");
  std::set<std::string> flags;
  std::istringstream lines(help.output);
  for (std::string line; std::getline(lines, line);) {
    std::smatch match;
    if (std::regex_search(line, match, kFlag)) flags.insert(match[1]);
  }
  REQUIRE(flags.count("model_repository") == 1);
  return flags;
}

}  // namespace kiln::testing
