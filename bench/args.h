// Hand-rolled "--name=value" flag parsing shared by every kiln-bench sub-command, so that the
// client stays dependency-light (no gflags/absl flags, whose globals would clash across
// sub-commands) and each sub-command's --help lists exactly its own flags.
#ifndef KILN_BENCH_ARGS_H_
#define KILN_BENCH_ARGS_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kiln::bench {

// Exit statuses of every sub-command (non-zero means failure, as with grpc_health_probe).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // an RPC failed, a file was bad, the server not SERVING
inline constexpr int kExitUsage = 2;    // bad flags

// The flags of one sub-command. Each flag is bound to a variable owned by the caller; the
// variable's value at registration is the flag's default (shown by Usage()). Accepted forms:
// "--name=value", and for bool flags also "--name" (true). "--help" or "-h" anywhere asks for
// help. Anything else (a positional argument, an unknown flag, a value flag without "=value", a
// malformed number, a number out of its flag's range) is an InvalidArgument naming the argument.
//
// Ownership: lives on the sub-command's stack, next to the variables it binds, which must
// outlive it. Not thread-safe (the client parses its flags once, on the main thread).
class FlagSet {
 public:
  // `usage_line` e.g. "kiln-bench infer --model=NAME [flags]"; `description` a paragraph;
  // `examples` full command lines.
  FlagSet(std::string usage_line, std::string description, std::vector<std::string> examples);

  FlagSet(const FlagSet&) = delete;
  FlagSet& operator=(const FlagSet&) = delete;

  void AddString(std::string name, std::string* value, std::string help);
  void AddInt(std::string name, int64_t* value, std::string help);
  void AddBool(std::string name, bool* value, std::string help);

  // What a number flag takes: > 0 (a rate, a duration) or >= 0 (a skipped start, a rate where 0
  // means "measure it").
  enum class Range { kPositive, kNonNegative };
  // A finite number in `range`; anything else is "--NAME must be a number > 0, not 'TEXT'"
  // (">= 0" for kNonNegative), the value as it was written.
  void AddDouble(std::string name, double* value, std::string help, Range range = Range::kPositive);

  // Replaces the help of the flag `name` (registered by shared code, worded by the command).
  void SetHelp(absl::string_view name, std::string help);

  // Parses `args` (the arguments after the sub-command's name) into the bound variables. On
  // "--help" returns OK with help_requested() true and leaves the remaining arguments alone.
  absl::Status Parse(const std::vector<std::string>& args);

  bool help_requested() const { return help_requested_; }
  // True when `name` appeared on the command line (whatever its value).
  bool WasSet(absl::string_view name) const;
  // Usage line, description, every flag with its default and help, examples.
  std::string Usage() const;

 private:
  enum class Kind { kString, kInt, kBool, kDouble };
  struct Flag {
    std::string name;
    Kind kind;
    void* value;  // std::string*, int64_t*, bool* or double*, by kind
    std::string default_text;
    std::string help;
    Range range = Range::kPositive;  // kDouble only
    bool set = false;
  };

  Flag* Find(absl::string_view name);
  void Add(std::string name, Kind kind, void* value, std::string default_text, std::string help);

  std::string usage_line_;
  std::string description_;
  std::vector<std::string> examples_;
  std::vector<Flag> flags_;
  bool help_requested_ = false;
};

// Parses a whole decimal int64 (optional leading '-', nothing else); std::nullopt otherwise.
std::optional<int64_t> ParseInt64(absl::string_view text);

// A finite number > 0 from `text` (a rate, a duration); std::nullopt otherwise.
std::optional<double> ParsePositive(absl::string_view text);

// The common front of every sub-command: parses `args`; on --help prints Usage() to `out` and
// returns kExitOk; on an error prints "kiln-bench <command>: <error>" and a hint to `err` and
// returns kExitUsage; returns std::nullopt when the command should go on.
std::optional<int> ParseFlagsOrExit(FlagSet* flags, absl::string_view command,
                                    const std::vector<std::string>& args, std::ostream& out,
                                    std::ostream& err);

}  // namespace kiln::bench

#endif  // KILN_BENCH_ARGS_H_
