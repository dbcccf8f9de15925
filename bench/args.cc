#include "bench/args.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace kiln::bench {

FlagSet::FlagSet(std::string usage_line, std::string description,
                 std::vector<std::string> examples)
    : usage_line_(std::move(usage_line)),
      description_(std::move(description)),
      examples_(std::move(examples)) {}

void FlagSet::Add(std::string name, Kind kind, void* value, std::string default_text,
                  std::string help) {
  flags_.push_back(Flag{std::move(name), kind, value, std::move(default_text), std::move(help)});
}

void FlagSet::AddString(std::string name, std::string* value, std::string help) {
  Add(std::move(name), Kind::kString, value, value->empty() ? "\"\"" : *value, std::move(help));
}

void FlagSet::AddInt(std::string name, int64_t* value, std::string help) {
  Add(std::move(name), Kind::kInt, value, absl::StrCat(*value), std::move(help));
}

void FlagSet::AddBool(std::string name, bool* value, std::string help) {
  Add(std::move(name), Kind::kBool, value, *value ? "true" : "false", std::move(help));
}

void FlagSet::AddDouble(std::string name, double* value, std::string help, Range range) {
  Add(std::move(name), Kind::kDouble, value, absl::StrCat(*value), std::move(help));
  flags_.back().range = range;
}

void FlagSet::SetHelp(absl::string_view name, std::string help) {
  if (Flag* flag = Find(name); flag != nullptr) flag->help = std::move(help);
}

FlagSet::Flag* FlagSet::Find(absl::string_view name) {
  for (Flag& flag : flags_) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

bool FlagSet::WasSet(absl::string_view name) const {
  for (const Flag& flag : flags_) {
    if (flag.name == name) return flag.set;
  }
  return false;
}

std::optional<double> ParsePositive(absl::string_view text) {
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || !std::isfinite(value) || !(value > 0)) {
    return std::nullopt;
  }
  return value;
}

std::optional<int64_t> ParseInt64(absl::string_view text) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args) {
  for (const std::string& arg_string : args) {
    const absl::string_view arg(arg_string);
    if (arg == "--help" || arg == "-h" || arg == "-help") {
      help_requested_ = true;
      return absl::OkStatus();
    }
    if (arg.size() < 3 || arg.substr(0, 2) != "--") {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", arg, "' (flags are --name=value)"));
    }
    const size_t eq = arg.find('=');
    const absl::string_view name = arg.substr(2, eq == absl::string_view::npos ? arg.npos : eq - 2);
    const std::optional<absl::string_view> value =
        eq == absl::string_view::npos ? std::nullopt
                                      : std::optional<absl::string_view>(arg.substr(eq + 1));
    Flag* flag = Find(name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    switch (flag->kind) {
      case Kind::kString:
        if (!value) {
          return absl::InvalidArgumentError(
              absl::StrCat("flag --", name, " needs a value (--", name, "=VALUE)"));
        }
        *static_cast<std::string*>(flag->value) = std::string(*value);
        break;
      case Kind::kInt: {
        if (!value) {
          return absl::InvalidArgumentError(
              absl::StrCat("flag --", name, " needs a value (--", name, "=N)"));
        }
        const std::optional<int64_t> parsed = ParseInt64(*value);
        if (!parsed) {
          return absl::InvalidArgumentError(
              absl::StrCat("flag --", name, ": '", *value, "' is not an integer"));
        }
        *static_cast<int64_t*>(flag->value) = *parsed;
        break;
      }
      case Kind::kBool: {
        bool parsed = true;
        if (value) {
          if (*value == "true" || *value == "1") {
            parsed = true;
          } else if (*value == "false" || *value == "0") {
            parsed = false;
          } else {
            return absl::InvalidArgumentError(absl::StrCat(
                "flag --", name, ": '", *value, "' is not a boolean (true/false/1/0)"));
          }
        }
        *static_cast<bool*>(flag->value) = parsed;
        break;
      }
      case Kind::kDouble: {
        if (!value) {
          return absl::InvalidArgumentError(
              absl::StrCat("flag --", name, " needs a value (--", name, "=X)"));
        }
        const bool positive = flag->range == Range::kPositive;
        double parsed = 0;
        if (!absl::SimpleAtod(*value, &parsed) || !std::isfinite(parsed) ||
            !(positive ? parsed > 0 : parsed >= 0)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "--", name, " must be a number ", positive ? "> 0" : ">= 0", ", not '", *value, "'"));
        }
        *static_cast<double*>(flag->value) = parsed;
        break;
      }
    }
    flag->set = true;
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::string out = absl::StrCat("usage: ", usage_line_, "\n\n", description_, "\n\nflags:\n");
  std::vector<std::string> lefts;
  size_t width = 0;
  for (const Flag& flag : flags_) {
    lefts.push_back(absl::StrCat("--", flag.name, "=", flag.default_text));
    width = std::max(width, lefts.back().size());
  }
  lefts.push_back("--help");
  width = std::max(width, lefts.back().size());
  for (size_t i = 0; i <= flags_.size(); ++i) {
    const std::string& help = i < flags_.size() ? flags_[i].help : "print this help and exit";
    absl::StrAppend(&out, "  ", lefts[i], std::string(width - lefts[i].size() + 3, ' '), help,
                    "\n");
  }
  if (!examples_.empty()) {
    absl::StrAppend(&out, "\nexample", examples_.size() > 1 ? "s" : "", ":\n");
    for (const std::string& example : examples_) absl::StrAppend(&out, "  ", example, "\n");
  }
  return out;
}

std::optional<int> ParseFlagsOrExit(FlagSet* flags, absl::string_view command,
                                    const std::vector<std::string>& args, std::ostream& out,
                                    std::ostream& err) {
  const absl::Status status = flags->Parse(args);
  if (!status.ok()) {
    err << "kiln-bench " << command << ": " << status.message() << "\n"
        << "run 'kiln-bench " << command << " --help' for its flags\n";
    return kExitUsage;
  }
  if (flags->help_requested()) {
    out << flags->Usage();
    return kExitOk;
  }
  return std::nullopt;
}

}  // namespace kiln::bench
