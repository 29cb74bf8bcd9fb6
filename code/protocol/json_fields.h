// Typed access to the fields of one JSON request object, with the error messages a user can act
// on ("'temperature' must be a number, got string"). Shared by the native and OpenAI parsers;
// it only reads JSON and throws ProtocolError (400), never anything else.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace servelab {

/// Reads optional, typed fields from one JSON object. A field that is absent or null reads as
/// nullopt (OpenAI's fields are nullable: null means "the default"); a field of the wrong type
/// throws ProtocolError naming it as `prefix + name`.
class JsonFields {
 public:
  /// @param object must outlive this reader; throws ProtocolError if it is not a JSON object.
  /// @param prefix prepended to field names in messages, e.g. "generation_config." or "".
  /// @param what_object the object as a user calls it in messages ("the request body").
  JsonFields(const nlohmann::json& object, std::string prefix, const std::string& what_object);

  /// True when the field is present and not null.
  bool has(const std::string& name) const;
  /// The raw value (present and not null); nullptr otherwise.
  const nlohmann::json* raw(const std::string& name) const;

  /// Any JSON number. (JSON has no NaN or infinity; a string "NaN" is refused as a string.)
  std::optional<double> number(const std::string& name) const;
  /// A JSON integer, or a number with an integral value (5.0) that fits in int64; 1.5 and 1e300
  /// are refused with the reason.
  std::optional<int64_t> integer(const std::string& name) const;
  /// An integer in [-2^63, 2^64): negative values wrap to uint64 (two's complement), so every
  /// seed OpenAI accepts (int64) and every uint64 seed is usable.
  std::optional<uint64_t> seed(const std::string& name) const;
  std::optional<bool> boolean(const std::string& name) const;
  std::optional<std::string> string(const std::string& name) const;
  /// A JSON array of strings.
  std::optional<std::vector<std::string>> string_list(const std::string& name) const;
  /// A string (one element) or an array of strings, as OpenAI's `stop`.
  std::optional<std::vector<std::string>> string_or_string_list(const std::string& name) const;

  /// Throws ProtocolError for the first key that is not in `known`, listing the known ones.
  void refuse_unknown(const std::vector<std::string>& known) const;

  /// The field as messages and `param` name it.
  std::string param(const std::string& name) const { return prefix_ + name; }

 private:
  [[noreturn]] void wrong_type(const std::string& name, const char* expected) const;

  const nlohmann::json& object_;
  std::string prefix_;
};

/// Parses a request body. Throws ProtocolError (400) when it is not valid JSON (the message gives
/// the parser's position and reason, e.g. invalid UTF-8) or not a JSON object.
nlohmann::json parse_json_body(const std::string& body);

/// The JSON type of `value` as messages name it: "string", "number", "boolean", "null", "array",
/// "object".
std::string json_type_name(const nlohmann::json& value);

}  // namespace servelab
