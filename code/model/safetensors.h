// Reads safetensors files: memory-maps one file, validates its header against the bytes that
// follow, and hands out pointers to each tensor's bytes without copying them.
// It must never read outside the mapping or trust a number from the file before checking it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/dtype.h"
#include "common/mapped_file.h"
#include "common/tensor.h"

namespace servelab {

/// One tensor entry of a safetensors header.
struct SafetensorsTensor {
  std::string name;
  /// The dtype as written in the file, e.g. "BF16" or "I64".
  std::string dtype_name;
  /// Set for F32, F16 and BF16 (the dtypes servelab computes in); empty for the other dtypes.
  std::optional<DType> dtype;
  Shape shape;
  /// Byte offsets [begin, end) relative to the start of the data buffer (after the header).
  uint64_t begin = 0, end = 0;
  /// The tensor's (end - begin) bytes, host memory inside the file mapping; any alignment (the
  /// format does not promise any), so copy with memcpy or convert_to_f32 rather than casting.
  /// Null in the result of parse_safetensors_header, which has no mapping.
  const unsigned char* data = nullptr;

  uint64_t nbytes() const { return end - begin; }
};

/// A parsed, validated header.
struct SafetensorsHeader {
  /// Sorted by begin offset; together they tile the data buffer exactly.
  std::vector<SafetensorsTensor> tensors;
  /// The optional "__metadata__" object (string to string), e.g. {"format": "pt"}.
  std::map<std::string, std::string> metadata;
};

/// The safetensors format's cap on the header length N (the reference implementation's limit).
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

/// Bytes per element of a safetensors dtype name ("F32" -> 4, "BOOL" -> 1), or nullopt if the name
/// is not one of the format's dtypes.
std::optional<size_t> safetensors_dtype_size(std::string_view dtype_name);

/// Parses and validates a header.
/// @param file_name used in error messages only.
/// @param header_json the N bytes of JSON that follow the 8-byte length prefix.
/// @param buffer_size the size of the data buffer that follows the header (file size - 8 - N).
/// @return the tensors sorted by begin offset (data pointers null) and the metadata.
/// Throws servelab::Error naming the file, the tensor if there is one, and what was expected.
SafetensorsHeader parse_safetensors_header(const std::string& file_name,
                                           std::string_view header_json, uint64_t buffer_size);

/// One memory-mapped safetensors file. The tensors' data pointers stay valid as long as the object
/// lives (moving it keeps them valid: the mapping does not move).
class SafetensorsFile {
 public:
  /// Maps `path`, reads the header length, and validates the whole header against the file size.
  /// Throws servelab::Error naming the file if it is missing, truncated or inconsistent.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  /// All tensors, sorted by offset in the file.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  /// The tensor called `name`, or nullptr if the file has none.
  const SafetensorsTensor* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string path_;
  std::unique_ptr<MappedFile> mapping_;
  std::vector<SafetensorsTensor> tensors_;
  std::unordered_map<std::string, size_t> index_by_name_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace servelab
