// A file in the temporary folder, for the trace loaders' tests (never the real traces).
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace servelab::testing {

/// A CSV file in the temporary folder that lives as long as the object.
class TemporaryCsv {
 public:
  explicit TemporaryCsv(const std::string& contents) {
    const char* folder = std::getenv("TMPDIR");
    path_ = std::string(folder != nullptr ? folder : "/tmp") + "/servelab_replay_test_" +
            std::to_string(::getpid()) + "_" + std::to_string(counter_++) + ".trace";
    std::ofstream file(path_, std::ios::binary);
    file << contents;
  }
  ~TemporaryCsv() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

}  // namespace servelab::testing
