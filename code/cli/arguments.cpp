#include "cli/arguments.h"

#include <cmath>
#include <cstdlib>

#include "common/error.h"

namespace servelab::cli {

bool asks_for_help(const std::vector<std::string>& args) {
  for (const std::string& arg : args)
    if (arg == "--help" || arg == "-h") return true;
  return false;
}

Arguments::Arguments(const std::vector<std::string>& args,
                     const std::set<std::string>& value_options,
                     const std::set<std::string>& flags) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg.rfind("--", 0) != 0) fail("unexpected argument '", arg, "' (options start with --)");
    std::string name = arg.substr(2);
    std::optional<std::string> inline_value;
    if (size_t equals = name.find('='); equals != std::string::npos) {
      inline_value = name.substr(equals + 1);
      name = name.substr(0, equals);
    }
    if (flags.count(name)) {
      if (inline_value) fail("option --", name, " takes no value");
      values_[name] = "true";
    } else if (value_options.count(name)) {
      if (inline_value) {
        values_[name] = *inline_value;
      } else {
        if (i + 1 >= args.size()) fail("option --", name, " needs a value");
        values_[name] = args[++i];
      }
    } else {
      fail("unknown option --", name, " (see --help)");
    }
  }
}

std::string Arguments::get(const std::string& name, const std::string& fallback) const {
  auto found = values_.find(name);
  return found == values_.end() ? fallback : found->second;
}

std::optional<std::string> Arguments::get(const std::string& name) const {
  auto found = values_.find(name);
  if (found == values_.end()) return std::nullopt;
  return found->second;
}

long long Arguments::get_int(const std::string& name, long long fallback) const {
  auto value = get(name);
  if (!value) return fallback;
  char* end = nullptr;
  errno = 0;
  long long parsed = std::strtoll(value->c_str(), &end, 10);
  if (value->empty() || *end != '\0' || errno != 0)
    fail("--", name, " must be an integer, got '", *value, "'");
  return parsed;
}

double Arguments::get_double(const std::string& name, double fallback) const {
  auto value = get(name);
  if (!value) return fallback;
  char* end = nullptr;
  double parsed = std::strtod(value->c_str(), &end);
  if (value->empty() || *end != '\0' || !std::isfinite(parsed)) {
    fail("--", name, " must be a number, got '", *value, "'");
  }
  return parsed;
}

}  // namespace servelab::cli
