// Where tests find the project's files: fixtures, the embedded model, built programs.
#pragma once

#include <string>

namespace servelab::testing {

inline std::string source_path(const std::string& relative) {
  return std::string(SERVELAB_SOURCE_DIR) + "/" + relative;
}
inline std::string fixture_path(const std::string& relative) {
  return source_path("tests/fixtures/" + relative);
}
inline std::string binary_path(const std::string& relative) {
  return std::string(SERVELAB_BINARY_DIR) + "/" + relative;
}

}  // namespace servelab::testing
