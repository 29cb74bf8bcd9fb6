#include "model/safetensors.h"

#include <algorithm>
#include <array>
#include <limits>
#include <nlohmann/json.hpp>
#include <tuple>
#include <unordered_set>
#include <utility>

#include "common/error.h"

namespace servelab {
namespace {

using Json = nlohmann::json;

struct DTypeEntry {
  std::string_view name;
  size_t size;
  std::optional<DType> dtype;  // the servelab dtype, for the three servelab computes in
};

// Every dtype of the safetensors format, with its element size in bytes.
constexpr std::array<DTypeEntry, 15> kDTypes = {{
    {"BOOL", 1, std::nullopt},
    {"U8", 1, std::nullopt},
    {"I8", 1, std::nullopt},
    {"F8_E4M3", 1, std::nullopt},
    {"F8_E5M2", 1, std::nullopt},
    {"I16", 2, std::nullopt},
    {"U16", 2, std::nullopt},
    {"F16", 2, DType::kF16},
    {"BF16", 2, DType::kBF16},
    {"I32", 4, std::nullopt},
    {"U32", 4, std::nullopt},
    {"F32", 4, DType::kF32},
    {"I64", 8, std::nullopt},
    {"U64", 8, std::nullopt},
    {"F64", 8, std::nullopt},
}};

// The helpers below are used by the lab region of parse_safetensors_header; [[maybe_unused]]
// keeps the student tree, where that region is a stub, free of warnings.

/// The table entry for a dtype name, or nullptr.
[[maybe_unused]] const DTypeEntry* find_dtype(std::string_view name) {
  for (const DTypeEntry& entry : kDTypes) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

/// "BOOL, U8, ..., F64", for error messages.
[[maybe_unused]] std::string known_dtype_names() {
  std::string names;
  for (const DTypeEntry& entry : kDTypes) {
    if (!names.empty()) names += ", ";
    names += entry.name;
  }
  return names;
}

/// The value of a JSON integer that is >= 0; nullopt for negative numbers, floats (even 2.0, which
/// the format does not allow) and anything that is not a number.
[[maybe_unused]] std::optional<uint64_t> as_non_negative_integer(const Json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  // nlohmann stores "-0" as a signed integer; accept it, reject real negatives.
  if (value.is_number_integer() && value.get<int64_t>() >= 0) return value.get<uint64_t>();
  return std::nullopt;
}

/// A JSON value as compact text for an error message, cut short if long.
std::string describe(const Json& value) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  constexpr size_t kMaxLength = 60;
  if (text.size() > kMaxLength) text = text.substr(0, kMaxLength) + "...";
  return text;
}

uint64_t read_little_endian_u64(const unsigned char* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

}  // namespace

std::optional<size_t> safetensors_dtype_size(std::string_view dtype_name) {
  for (const DTypeEntry& entry : kDTypes) {
    if (entry.name == dtype_name) return entry.size;
  }
  return std::nullopt;
}

SafetensorsHeader parse_safetensors_header(const std::string& file_name,
                                           std::string_view header_json, uint64_t buffer_size) {
  // nlohmann keeps only the last of two equal keys; a callback sees every top-level key as it is
  // parsed, so that a tensor written twice is an error instead of a silent choice.
  std::unordered_set<std::string> seen_names;
  std::string duplicate_name;
  auto watch_keys = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth == 1 && event == Json::parse_event_t::key && duplicate_name.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen_names.insert(key).second) duplicate_name = key;
    }
    return true;
  };
  Json root;
  try {
    root = Json::parse(header_json.begin(), header_json.end(), watch_keys);
  } catch (const Json::exception& error) {
    // Covers malformed JSON and strings that are not valid UTF-8.
    fail(file_name, ": safetensors header is not valid JSON: ", error.what());
  }
  if (!root.is_object()) {
    fail(file_name, ": safetensors header must be a JSON object mapping tensor names to entries, ",
         "found ", root.type_name());
  }
  if (!duplicate_name.empty()) {
    fail(file_name, ": tensor '", duplicate_name, "' appears twice in the safetensors header");
  }

  SafetensorsHeader header;
  if (auto metadata = root.find("__metadata__"); metadata != root.end()) {
    if (!metadata->is_object()) {
      fail(file_name, ": \"__metadata__\" must be an object of strings, found ",
           metadata->type_name());
    }
    for (const auto& item : metadata->items()) {
      if (!item.value().is_string()) {
        fail(file_name, ": \"__metadata__\" entry '", item.key(), "' must be a string, found ",
             item.value().type_name(), " ", describe(item.value()));
      }
      header.metadata[item.key()] = item.value().get<std::string>();
    }
  }
  header.tensors.reserve(root.size());

  // BEGIN LAB(lab01-safetensors)
  // Every key of the header object except "__metadata__" is a tensor name, and its value says
  // where that tensor's bytes are and how to read them:
  //   "model.norm.weight": {"dtype": "BF16", "shape": [512], "data_offsets": [0, 1024]}
  // data_offsets are [begin, end) byte offsets into the data buffer that follows the header. Every
  // number here comes from a file we do not trust, so each is checked before it is used: a wrong
  // offset must become an error message, never a read outside the file.
  for (const auto& item : root.items()) {
    const std::string& name = item.key();
    const Json& entry = item.value();
    if (name == "__metadata__") continue;  // read above

    if (!entry.is_object()) {
      fail(file_name, ": tensor '", name, "': entry must be an object with \"dtype\", \"shape\" ",
           "and \"data_offsets\", found ", entry.type_name());
    }
    // Unknown keys are ignored, as the reference implementation does; these three are required.
    for (const char* key : {"dtype", "shape", "data_offsets"}) {
      if (!entry.contains(key)) fail(file_name, ": tensor '", name, "' has no \"", key, "\" field");
    }
    SafetensorsTensor tensor;
    tensor.name = name;

    // dtype: one of the format's names; it fixes the element size.
    const Json& dtype_json = entry.at("dtype");
    const DTypeEntry* dtype =
        dtype_json.is_string() ? find_dtype(dtype_json.get<std::string>()) : nullptr;
    if (dtype == nullptr) {
      fail(file_name, ": tensor '", name, "' has dtype ", describe(dtype_json),
           "; expected one of ", known_dtype_names());
    }
    tensor.dtype_name = std::string(dtype->name);
    tensor.dtype = dtype->dtype;

    // shape: an array of non-negative integers; [] is a scalar (one element).
    const Json& shape_json = entry.at("shape");
    if (!shape_json.is_array()) {
      fail(file_name, ": tensor '", name, "' has shape ", describe(shape_json),
           "; expected an array of non-negative integers");
    }
    for (const Json& extent_json : shape_json) {
      std::optional<uint64_t> extent = as_non_negative_integer(extent_json);
      // Shape holds int64_t, so larger extents cannot be represented (nor stored in any file).
      if (!extent || *extent > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        fail(file_name, ": tensor '", name, "' has shape ", describe(shape_json),
             "; expected an array of non-negative integers");
      }
      tensor.shape.push_back(static_cast<int64_t>(*extent));
    }

    // The bytes the shape needs: element size times every extent. The product of numbers from the
    // file can wrap around 64 bits and look small, so test each step before multiplying. A zero
    // extent makes the tensor empty however large the other extents are.
    uint64_t byte_count = 0;
    if (std::find(tensor.shape.begin(), tensor.shape.end(), 0) == tensor.shape.end()) {
      byte_count = dtype->size;
      for (int64_t extent : tensor.shape) {
        uint64_t factor = static_cast<uint64_t>(extent);
        if (byte_count > std::numeric_limits<uint64_t>::max() / factor) {
          fail(file_name, ": tensor '", name, "' has shape ", shape_string(tensor.shape),
               " whose size in bytes overflows 64 bits");
        }
        byte_count *= factor;
      }
    }

    // data_offsets: [begin, end), inside the buffer, exactly as long as the shape needs.
    const Json& offsets_json = entry.at("data_offsets");
    std::optional<uint64_t> begin, end;
    if (offsets_json.is_array() && offsets_json.size() == 2) {
      begin = as_non_negative_integer(offsets_json[0]);
      end = as_non_negative_integer(offsets_json[1]);
    }
    if (!begin || !end) {
      fail(file_name, ": tensor '", name, "' has data_offsets ", describe(offsets_json),
           "; expected [begin, end], two non-negative integers");
    }
    if (*begin > *end) {
      fail(file_name, ": tensor '", name, "' has data_offsets [", *begin, ", ", *end,
           "] whose begin is after its end");
    }
    if (*end > buffer_size) {
      fail(file_name, ": tensor '", name, "' has data_offsets [", *begin, ", ", *end,
           "] out of bounds: the data buffer after the header holds ", buffer_size,
           " bytes (is the file truncated?)");
    }
    if (*end - *begin != byte_count) {
      fail(file_name, ": tensor '", name, "' has shape ", shape_string(tensor.shape), " and dtype ",
           tensor.dtype_name, ", which need ", byte_count, " bytes, but its data_offsets [", *begin,
           ", ", *end, "] hold ", *end - *begin, " bytes");
    }
    tensor.begin = *begin;
    tensor.end = *end;
    header.tensors.push_back(std::move(tensor));
  }
  // END LAB

  // The tensors must tile the buffer: sorted by offset, each begins where the previous one ends,
  // the first at 0 and the last at the buffer's end. Anything else is overlapping tensors (one
  // write would change the other) or bytes nobody owns, both signs of a broken writer.
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const SafetensorsTensor& left, const SafetensorsTensor& right) {
              return std::tie(left.begin, left.end, left.name) <
                     std::tie(right.begin, right.end, right.name);
            });
  uint64_t covered_until = 0;
  const SafetensorsTensor* previous = nullptr;
  for (const SafetensorsTensor& tensor : header.tensors) {
    if (tensor.begin < covered_until) {  // only possible with a previous tensor
      fail(file_name, ": tensors '", previous->name, "' (bytes [", previous->begin, ", ",
           previous->end, ")) and '", tensor.name, "' (bytes [", tensor.begin, ", ", tensor.end,
           ")) overlap");
    }
    if (tensor.begin > covered_until) {
      if (previous == nullptr) {
        fail(file_name, ": gap of ", tensor.begin, " unused bytes [0, ", tensor.begin,
             ") before the first tensor '", tensor.name, "'; the first tensor must begin at 0");
      }
      fail(file_name, ": gap of ", tensor.begin - covered_until, " unused bytes [", covered_until,
           ", ", tensor.begin, ") between tensors '", previous->name, "' and '", tensor.name,
           "'; tensors must be stored back to back");
    }
    covered_until = tensor.end;
    previous = &tensor;
  }
  if (covered_until != buffer_size) {
    if (previous == nullptr) {
      fail(file_name, ": the header lists no tensors, but ", buffer_size,
           " trailing bytes follow it");
    }
    fail(file_name, ": ", buffer_size - covered_until, " trailing bytes after the last tensor '",
         previous->name, "', which ends at ", covered_until, " of a ", buffer_size,
         "-byte data buffer");
  }
  return header;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  mapping_ = std::make_unique<MappedFile>(path);  // throws naming the path if it cannot
  const uint64_t file_size = mapping_->size();
  if (file_size < 8) {
    fail(path, ": file is ", file_size, " bytes, shorter than the 8-byte header length that ",
         "begins every safetensors file");
  }
  const uint64_t header_length = read_little_endian_u64(mapping_->data());
  if (header_length == 0) {
    fail(path, ": header length is 0; a safetensors header is a JSON object, at least \"{}\"");
  }
  // Compared as file_size - 8 (cannot wrap, checked above), not header_length + 8 (can).
  if (header_length > file_size - 8) {
    fail(path, ": header length ", header_length, " runs past the end of the file (size ",
         file_size, "); is the file truncated, or not a safetensors file?");
  }
  if (header_length > kSafetensorsMaxHeaderBytes) {
    fail(path, ": header length ", header_length, " exceeds the safetensors limit of ",
         kSafetensorsMaxHeaderBytes, " bytes");
  }
  // The JSON is parsed straight from the mapping: no copy, whatever N says.
  const unsigned char* header_bytes = mapping_->data() + 8;
  std::string_view header_json(reinterpret_cast<const char*>(header_bytes), header_length);
  SafetensorsHeader header =
      parse_safetensors_header(path, header_json, file_size - 8 - header_length);

  const unsigned char* buffer = header_bytes + header_length;
  tensors_ = std::move(header.tensors);
  metadata_ = std::move(header.metadata);
  index_by_name_.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    tensors_[i].data = buffer + tensors_[i].begin;  // in bounds: validated against the buffer
    index_by_name_.emplace(tensors_[i].name, i);
  }
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  auto found = index_by_name_.find(name);
  return found == index_by_name_.end() ? nullptr : &tensors_[found->second];
}

}  // namespace servelab
