#include "protocol/json_fields.h"

#include <cmath>
#include <limits>
#include <utility>

#include "common/error.h"
#include "protocol/protocol_error.h"

namespace servelab {

std::string json_type_name(const nlohmann::json& value) {
  if (value.is_number()) return "number";  // nlohmann says "number" for all three kinds too
  return value.type_name();
}

nlohmann::json parse_json_body(const std::string& body) {
  nlohmann::json parsed;
  try {
    parsed = nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& error) {
    // A syntax error (parse_error) or a number too large for a double (out_of_range 406, e.g.
    // 1e400). nlohmann's message reads "[json.exception.parse_error.101] parse error at ...";
    // drop the bracketed id, which means nothing to a client.
    std::string reason = error.what();
    const size_t id_end = reason.find("] ");
    if (id_end != std::string::npos) reason = reason.substr(id_end + 2);
    throw ProtocolError::invalid_request(str_cat("The request body is not valid JSON: ", reason),
                                         "", "invalid_json");
  }
  if (!parsed.is_object()) {
    throw ProtocolError::invalid_request(
        str_cat("The request body must be a JSON object, got ", json_type_name(parsed)), "",
        "invalid_json");
  }
  return parsed;
}

JsonFields::JsonFields(const nlohmann::json& object, std::string prefix,
                       const std::string& what_object)
    : object_(object), prefix_(std::move(prefix)) {
  if (!object_.is_object()) {
    std::string field = prefix_;
    if (!field.empty() && field.back() == '.') field.pop_back();
    throw ProtocolError::invalid_request(
        str_cat(what_object, " must be a JSON object, got ", json_type_name(object_)), field);
  }
}

bool JsonFields::has(const std::string& name) const {
  return raw(name) != nullptr;
}

const nlohmann::json* JsonFields::raw(const std::string& name) const {
  auto found = object_.find(name);
  if (found == object_.end() || found->is_null()) return nullptr;
  return &*found;
}

void JsonFields::wrong_type(const std::string& name, const char* expected) const {
  throw ProtocolError::invalid_request(
      str_cat("'", param(name), "' must be ", expected, ", got ", json_type_name(*raw(name))),
      param(name));
}

std::optional<double> JsonFields::number(const std::string& name) const {
  const nlohmann::json* value = raw(name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number()) wrong_type(name, "a number");
  return value->get<double>();
}

std::optional<int64_t> JsonFields::integer(const std::string& name) const {
  const nlohmann::json* value = raw(name);
  if (value == nullptr) return std::nullopt;
  if (value->is_number_unsigned()) {
    const uint64_t unsigned_value = value->get<uint64_t>();
    if (unsigned_value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw ProtocolError::invalid_request(
          str_cat("'", param(name), "' is ", unsigned_value, ", too large for this field"),
          param(name));
    }
    return static_cast<int64_t>(unsigned_value);
  }
  if (value->is_number_integer()) return value->get<int64_t>();
  if (value->is_number_float()) {
    // 5.0 is an integer written as a float; 1.5 is not; 1e300 does not fit any integer.
    const double as_double = value->get<double>();
    if (std::trunc(as_double) != as_double) {
      throw ProtocolError::invalid_request(
          str_cat("'", param(name), "' must be an integer, got ", value->dump()), param(name));
    }
    if (!(std::fabs(as_double) < 9.2e18)) {
      throw ProtocolError::invalid_request(
          str_cat("'", param(name), "' is ", value->dump(), ", too large for this field"),
          param(name));
    }
    return static_cast<int64_t>(as_double);
  }
  wrong_type(name, "an integer");
}

std::optional<uint64_t> JsonFields::seed(const std::string& name) const {
  const nlohmann::json* value = raw(name);
  if (value == nullptr) return std::nullopt;
  if (value->is_number_unsigned()) return value->get<uint64_t>();
  return static_cast<uint64_t>(*integer(name));
}

std::optional<bool> JsonFields::boolean(const std::string& name) const {
  const nlohmann::json* value = raw(name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_boolean()) wrong_type(name, "a boolean (true or false)");
  return value->get<bool>();
}

std::optional<std::string> JsonFields::string(const std::string& name) const {
  const nlohmann::json* value = raw(name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_string()) wrong_type(name, "a string");
  return value->get<std::string>();
}

std::optional<std::vector<std::string>> JsonFields::string_list(const std::string& name) const {
  const nlohmann::json* value = raw(name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_array()) wrong_type(name, "an array of strings");
  std::vector<std::string> strings;
  for (size_t i = 0; i < value->size(); ++i) {
    const nlohmann::json& element = (*value)[i];
    if (!element.is_string()) {
      throw ProtocolError::invalid_request(
          str_cat("'", param(name), "' must be an array of strings, but element ", i, " is ",
                  json_type_name(element)),
          param(name));
    }
    strings.push_back(element.get<std::string>());
  }
  return strings;
}

std::optional<std::vector<std::string>> JsonFields::string_or_string_list(
    const std::string& name) const {
  const nlohmann::json* value = raw(name);
  if (value == nullptr) return std::nullopt;
  if (value->is_string()) return std::vector<std::string>{value->get<std::string>()};
  if (!value->is_array()) wrong_type(name, "a string or an array of strings");
  return string_list(name);
}

void JsonFields::refuse_unknown(const std::vector<std::string>& known) const {
  for (const auto& item : object_.items()) {
    bool is_known = false;
    for (const std::string& name : known) is_known = is_known || item.key() == name;
    if (is_known) continue;
    std::string list;
    for (const std::string& name : known) list += (list.empty() ? "" : ", ") + name;
    throw ProtocolError::invalid_request(
        str_cat("Unrecognized request argument supplied: '", param(item.key()),
                "' (known fields here: ", list, ")"),
        param(item.key()), "unknown_field");
  }
}

}  // namespace servelab
