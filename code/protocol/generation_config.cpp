#include "protocol/generation_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

#include "common/error.h"
#include "protocol/protocol_error.h"

namespace servelab {
namespace {

// The features a request may name but the engine cannot honour yet. A request that sets one to
// anything but its neutral value is refused with a 400 naming the field, never silently run
// without it. When the engine learns a feature, delete its row (and let the range checks below
// bound it).
struct UnsupportedFeature {
  const char* field;    // GenerationConfig's (native) name
  const char* what;     // the feature, as a user would call it
  const char* neutral;  // the only accepted value, written as the user would send it
  bool (*is_used)(const GenerationConfig& config);
};

const UnsupportedFeature kUnsupportedFeatures[] = {
    {"presence_penalty", "the presence penalty", "0",
     [](const GenerationConfig& config) { return config.presence_penalty != 0.0; }},
    {"frequency_penalty", "the frequency penalty", "0",
     [](const GenerationConfig& config) { return config.frequency_penalty != 0.0; }},
};

[[noreturn]] void refuse(const std::string& field, FieldSpelling spelling,
                         const std::string& message) {
  const std::string param = spelled_field(field, spelling);
  throw ProtocolError::invalid_request(str_cat("'", param, "' ", message), param);
}

// Comparisons are written so that NaN (which the parsers never produce, but a caller might) fails.
void check_range(const std::string& field, double value, double low, bool low_inclusive,
                 double high, FieldSpelling spelling) {
  const bool above_low = low_inclusive ? value >= low : value > low;
  if (!(above_low && value <= high)) {
    refuse(field, spelling,
           str_cat("must be in ", low_inclusive ? "[" : "(", low, ", ", high, "], got ", value));
  }
}

void check_integer_range(const std::string& field, int64_t value, int64_t low, int64_t high,
                         FieldSpelling spelling, const char* why_high = "") {
  if (value < low || value > high) {
    if (high == INT64_MAX) refuse(field, spelling, str_cat("must be >= ", low, ", got ", value));
    refuse(field, spelling,
           str_cat("must be in [", low, ", ", high, "]", why_high, ", got ", value));
  }
}

}  // namespace

std::string spelled_field(const std::string& field, FieldSpelling spelling) {
  if (spelling == FieldSpelling::kNative) return "generation_config." + field;
  if (field == "max_new_tokens") return "max_tokens";
  if (field == "min_new_tokens") return "min_tokens";
  if (field == "num_return_sequences") return "n";
  return field;
}

bool GenerationConfig::operator==(const GenerationConfig& other) const {
  return max_new_tokens == other.max_new_tokens && min_new_tokens == other.min_new_tokens &&
         do_sample == other.do_sample && temperature == other.temperature && top_k == other.top_k &&
         top_p == other.top_p && typical_p == other.typical_p &&
         repetition_penalty == other.repetition_penalty &&
         presence_penalty == other.presence_penalty &&
         frequency_penalty == other.frequency_penalty && num_beams == other.num_beams &&
         num_return_sequences == other.num_return_sequences && seed == other.seed &&
         stop == other.stop && ignore_eos == other.ignore_eos &&
         length_penalty == other.length_penalty && early_stopping == other.early_stopping;
}

std::optional<std::pair<std::string, std::string>> unsupported_feature(
    const GenerationConfig& config) {
  for (const UnsupportedFeature& feature : kUnsupportedFeatures) {
    if (feature.is_used(config)) {
      return std::make_pair(std::string(feature.field),
                            str_cat("asks for ", feature.what,
                                    ", which is not supported by this server yet; leave it out "
                                    "or set it to ",
                                    feature.neutral));
    }
  }
  return std::nullopt;
}

void GenerationConfig::validate(const ProtocolLimits& limits, FieldSpelling spelling) const {
  // Ranges that hold for any server come first, then the refusals, then configured limits: a
  // num_beams of 4 is "not supported yet" rather than "over the limit of 1".
  check_integer_range("max_new_tokens", max_new_tokens, 1, INT64_MAX, spelling);
  if (min_new_tokens < 0 || min_new_tokens > max_new_tokens) {
    refuse("min_new_tokens", spelling,
           str_cat("must be in [0, ", spelled_field("max_new_tokens", spelling), " = ",
                   max_new_tokens, "], got ", min_new_tokens));
  }
  check_range("temperature", temperature, 0.0, true, 100.0, spelling);
  check_integer_range("top_k", top_k, 0, INT32_MAX, spelling);
  check_range("top_p", top_p, 0.0, false, 1.0, spelling);
  check_range("typical_p", typical_p, 0.0, false, 1.0, spelling);
  check_range("repetition_penalty", repetition_penalty, 0.0, false, 100.0, spelling);
  check_range("presence_penalty", presence_penalty, -2.0, true, 2.0, spelling);
  check_range("frequency_penalty", frequency_penalty, -2.0, true, 2.0, spelling);
  check_integer_range("num_beams", num_beams, 1, INT64_MAX, spelling);
  check_range("length_penalty", length_penalty, -10.0, true, 10.0, spelling);
  if (early_stopping != "false" && early_stopping != "true" && early_stopping != "never") {
    refuse("early_stopping", spelling,
           str_cat("must be true, false or \"never\", got \"", early_stopping, "\""));
  }

  if (auto refusal = unsupported_feature(*this)) refuse(refusal->first, spelling, refusal->second);

  check_integer_range("num_beams", num_beams, 1, limits.max_num_beams, spelling,
                      " (this server's limit)");
  check_integer_range("num_return_sequences", num_return_sequences, 1, limits.max_return_sequences,
                      spelling, " (this server's limit)");
  if (num_beams > 1 && num_return_sequences > num_beams) {
    refuse("num_return_sequences", spelling,
           str_cat("is ", num_return_sequences, " but beam search keeps only ", num_beams,
                   " beams; it must be <= ", spelled_field("num_beams", spelling)));
  }
  if (static_cast<int64_t>(stop.size()) > limits.max_stop_sequences) {
    refuse("stop", spelling,
           str_cat("has ", stop.size(), " strings; this server accepts at most ",
                   limits.max_stop_sequences));
  }
  for (size_t i = 0; i < stop.size(); ++i) {
    if (stop[i].empty()) refuse("stop", spelling, str_cat("string ", i, " is empty"));
    if (static_cast<int64_t>(stop[i].size()) > limits.max_stop_length_bytes) {
      refuse("stop", spelling,
             str_cat("string ", i, " is ", stop[i].size(),
                     " bytes long; this server accepts at most ", limits.max_stop_length_bytes));
    }
  }
}

SamplingParams GenerationConfig::to_sampling_params(uint64_t default_seed) const {
  SamplingParams params;
  params.temperature = is_greedy() ? 0.0f : static_cast<float>(temperature);
  params.top_k = static_cast<int32_t>(top_k);
  // A valid but tiny top_p or penalty must not round to a float 0, which the sampler refuses.
  const float smallest = std::numeric_limits<float>::min();
  params.top_p = std::max(static_cast<float>(top_p), smallest);
  params.typical_p = std::max(static_cast<float>(typical_p), smallest);
  params.repetition_penalty = std::max(static_cast<float>(repetition_penalty), smallest);
  params.seed = seed.value_or(default_seed);
  return params;
}

}  // namespace servelab
