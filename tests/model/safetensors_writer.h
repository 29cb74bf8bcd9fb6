// Writes safetensors files for tests, byte by byte: valid ones through write_safetensors, and
// deliberately broken ones through the raw writers, which check nothing.
// Test-only: it never validates what it writes (that is the reader's job, and what tests probe).
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/tensor.h"

namespace servelab::testing {

using Bytes = std::vector<unsigned char>;

/// One tensor to write: its bytes are written as given, whatever dtype_name and shape say.
struct SafetensorsEntry {
  std::string name;
  std::string dtype_name;  // "F32", "BF16", ... (or anything, for broken files)
  Shape shape;
  Bytes bytes;
};

/// The 8 little-endian bytes of `value`, as safetensors stores the header length.
inline std::string little_endian_u64(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

/// Writes `bytes` to `path` exactly, replacing the file.
inline void write_raw_file(const std::string& path, const std::string& bytes) {
  std::ofstream stream(path, std::ios::binary | std::ios::trunc);
  stream.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!stream) throw std::runtime_error("cannot write test file " + path);
}

inline std::string read_raw_file(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) throw std::runtime_error("cannot read test file " + path);
  return std::string(std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>());
}

/// A file of header length, header and data with no checks: the length is header_json's size
/// unless `header_length` overrides it (to lie about it).
inline void write_safetensors_raw(const std::string& path, const std::string& header_json,
                                  const Bytes& data, int64_t header_length = -1) {
  uint64_t length = header_length < 0 ? header_json.size() : static_cast<uint64_t>(header_length);
  write_raw_file(path,
                 little_endian_u64(length) + header_json + std::string(data.begin(), data.end()));
}

/// The header JSON that lays `tensors` out back to back in the given order, as writers do.
inline std::string safetensors_header_json(const std::vector<SafetensorsEntry>& tensors,
                                           const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const SafetensorsEntry& tensor : tensors) {
    header[tensor.name] = {{"dtype", tensor.dtype_name},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + tensor.bytes.size()}}};
    offset += tensor.bytes.size();
  }
  return header.dump();
}

/// Writes a valid safetensors file (valid as long as each entry's bytes match its dtype and shape).
inline void write_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  Bytes data;
  for (const SafetensorsEntry& tensor : tensors) {
    data.insert(data.end(), tensor.bytes.begin(), tensor.bytes.end());
  }
  write_safetensors_raw(path, safetensors_header_json(tensors, metadata), data);
}

/// Element bytes in the file's (little-endian) order.
inline Bytes f32_bytes(const std::vector<float>& values) {
  Bytes bytes(values.size() * 4);
  for (size_t i = 0; i < values.size(); ++i) {
    uint32_t word;
    std::memcpy(&word, &values[i], 4);
    for (int b = 0; b < 4; ++b) bytes[4 * i + b] = static_cast<unsigned char>(word >> (8 * b));
  }
  return bytes;
}
inline Bytes u16_bytes(const std::vector<uint16_t>& values) {
  Bytes bytes(values.size() * 2);
  for (size_t i = 0; i < values.size(); ++i) {
    bytes[2 * i] = static_cast<unsigned char>(values[i] & 0xff);
    bytes[2 * i + 1] = static_cast<unsigned char>(values[i] >> 8);
  }
  return bytes;
}
inline Bytes f16_bytes(const std::vector<float>& values) {
  std::vector<uint16_t> bits;
  for (float value : values) bits.push_back(float_to_fp16(value));
  return u16_bytes(bits);
}
inline Bytes bf16_bytes(const std::vector<float>& values) {
  std::vector<uint16_t> bits;
  for (float value : values) bits.push_back(float_to_bf16(value));
  return u16_bytes(bits);
}

/// A fresh folder under $TMPDIR (or /tmp), removed with everything in it on destruction.
class ScopedTempDir {
 public:
  ScopedTempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "servelab-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~ScopedTempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }
  /// path()/relative
  std::string file(const std::string& relative) const { return path_ + "/" + relative; }

 private:
  std::string path_;
};

}  // namespace servelab::testing
