// A read-only memory-mapped file. Model weights are mapped rather than read so that loading a
// checkpoint costs no copy until a tensor is used, and the OS can share the pages between processes.
#pragma once

#include <cstddef>
#include <string>

namespace servelab {

class MappedFile {
 public:
  /// Maps `path` read-only. Throws servelab::Error naming the file if it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace servelab
