// What the C++ benchmarks share on their command line: flags given as `--name value` pairs, the
// JSON result written to a file or to stdout, and a main() that reports an error with the
// program's name and exits 1. Plumbing only: what a benchmark measures stays in its own file.
#pragma once

#include <cstdio>
#include <exception>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace servelab::bench {

/// Calls `on_flag(flag, value)` for each `--flag value` pair of argv[first], argv[first + 1], ...;
/// `on_flag` returns false for a flag it does not know. Throws servelab::Error for a flag with no
/// value and for an unknown flag (`hint`, when given, ends that message).
template <typename OnFlag>
void parse_flags(int argc, char** argv, int first, OnFlag on_flag, const std::string& hint = "") {
  for (int i = first; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) fail("flag ", flag, " needs a value");
    const std::string value = argv[++i];
    if (!on_flag(flag, value)) fail("unknown flag ", flag, hint);
  }
}

/// The result, indented, to `path`, or to stdout when `path` is empty.
inline void write_json(const nlohmann::json& result, const std::string& path) {
  const std::string text = result.dump(2);
  if (path.empty()) {
    std::printf("%s\n", text.c_str());
  } else {
    std::ofstream(path) << text << "\n";
  }
}

/// main()'s body: `run(argc, argv)`'s exit status, or 1 with "NAME: what went wrong" on stderr.
template <typename Run>
int bench_main(const char* name, int argc, char** argv, Run run) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s: %s\n", name, error.what());
    return 1;
  }
}

}  // namespace servelab::bench
