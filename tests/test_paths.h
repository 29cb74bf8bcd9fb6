// Where tests find the project's files: fixtures, the embedded model, built programs.
#pragma once

#include <cstdlib>
#include <string>

namespace servelab::testing {

/// The source tree the tests were built from, or $SERVELAB_SOURCE_DIR when set (test binaries
/// built on one machine and run on another, e.g. the GPU machine, whose checkout lives elsewhere).
inline std::string source_path(const std::string& relative) {
  const char* moved = std::getenv("SERVELAB_SOURCE_DIR");
  return std::string(moved != nullptr ? moved : SERVELAB_SOURCE_DIR) + "/" + relative;
}
inline std::string fixture_path(const std::string& relative) {
  return source_path("tests/fixtures/" + relative);
}
/// The model folder of a reference fixture: tests/fixtures/<name>, except "embedded", the default
/// model in models/ (its references live in tests/fixtures/embedded/ like every fixture's).
inline std::string fixture_model_dir(const std::string& name) {
  return name == "embedded" ? source_path("models/servelab-stories") : fixture_path(name);
}
inline std::string binary_path(const std::string& relative) {
  return std::string(SERVELAB_BINARY_DIR) + "/" + relative;
}

}  // namespace servelab::testing
