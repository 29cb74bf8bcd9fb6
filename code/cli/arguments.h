// A small command-line parser for the servelab subcommands: `--name value` and `--flag` options,
// with errors a user can act on (unknown option, missing value, not a number).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace servelab::cli {

/// Whether `args` holds `--help` or `-h` anywhere: the subcommand then prints its help and exits
/// before it checks anything else.
bool asks_for_help(const std::vector<std::string>& args);

class Arguments {
 public:
  /// `value_options` take a value (`--max-tokens 32` or `--max-tokens=32`); `flags` take none.
  Arguments(const std::vector<std::string>& args, const std::set<std::string>& value_options,
            const std::set<std::string>& flags);

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback) const;
  std::optional<std::string> get(const std::string& name) const;
  long long get_int(const std::string& name, long long fallback) const;
  double get_double(const std::string& name, double fallback) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace servelab::cli
