// What one request asks the engine to generate: token budget, sampling settings, stop strings.
// One type for every API (the native one names its fields after Hugging Face's GenerationConfig;
// the OpenAI parsers map onto it). Validation here refuses what the engine cannot honour yet.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol/protocol_limits.h"
#include "sampling/sampling_params.h"

namespace servelab {

/// How a request spells each field, so that error messages name the field the client sent:
/// the native API nests them under "generation_config."; OpenAI's renames a few (max_tokens,
/// min_tokens, n).
enum class FieldSpelling { kNative, kOpenAi };

/// The request field that carries GenerationConfig's `field` in that spelling, e.g.
/// ("max_new_tokens", kOpenAi) -> "max_tokens", ("top_p", kNative) -> "generation_config.top_p".
std::string spelled_field(const std::string& field, FieldSpelling spelling);

/// One request's generation settings. The defaults are Hugging Face's where it has one:
/// greedy (do_sample false), 16 new tokens, every filter and penalty off.
struct GenerationConfig {
  int64_t max_new_tokens = 16;  ///< stop after this many tokens (finish_reason "length"); >= 1
  int64_t min_new_tokens = 0;   ///< EOS and stop strings are ignored before this many; <= max
  /// false: greedy, whatever temperature says (Hugging Face's rule). The OpenAI APIs set it true.
  bool do_sample = false;
  double temperature = 1.0;         ///< in [0, 100]; 0 is greedy even when do_sample is true
  int64_t top_k = 0;                ///< >= 0; 0 is off
  double top_p = 1.0;               ///< in (0, 1]; 1 is off
  double typical_p = 1.0;           ///< in (0, 1]; 1 is off
  double repetition_penalty = 1.0;  ///< in (0, 100]; 1 is off
  double presence_penalty = 0.0;    ///< in [-2, 2] as OpenAI's; only 0 (off) is supported yet
  double frequency_penalty = 0.0;   ///< in [-2, 2] as OpenAI's; only 0 (off) is supported yet
  int64_t num_beams = 1;            ///< >= 1; > 1 is beam search (greedy, continuous batching)
  /// Beam search: a finished beam's score is its log-probability / length^length_penalty.
  double length_penalty = 1.0;  ///< in [-10, 10]
  /// Beam search's stopping rule, as Hugging Face's early_stopping: "false" (the heuristic),
  /// "true" (stop at num_beams finished beams) or "never".
  std::string early_stopping = "false";
  int64_t num_return_sequences = 1;  ///< OpenAI's n; in [1, limits.max_return_sequences]
  std::optional<uint64_t> seed;      ///< none: the server picks one (so sampling is not repeatable)
  std::vector<std::string> stop;     ///< stop strings; the output ends before the first match
  bool ignore_eos = false;           ///< keep generating past EOS (benchmarks)

  /// Exact, field-by-field equality (doubles compared with ==, stop strings in order, seed
  /// including whether it is set). The static-batching server packs only requests whose configs
  /// are equal, so "equal" must mean "the engine would do exactly the same thing"; configs that
  /// differ only in spelling (temperature 0 vs do_sample false) are *not* merged.
  bool operator==(const GenerationConfig& other) const;
  bool operator!=(const GenerationConfig& other) const { return !(*this == other); }

  /// Whether sampling reduces to argmax: do_sample false or temperature 0.
  bool is_greedy() const { return !do_sample || temperature == 0.0; }

  /// Throws ProtocolError (400) naming the first bad field in the client's spelling: a value out
  /// of range, over a limit, or a feature this server refuses (see unsupported_feature()).
  void validate(const ProtocolLimits& limits, FieldSpelling spelling) const;

  /// The sampler's view. Greedy configs map to temperature 0; no seed maps to `default_seed`
  /// (the server passes a fresh one per request).
  SamplingParams to_sampling_params(uint64_t default_seed = 0) const;
};

/// When `config` uses a feature the engine cannot honour yet, the field name (native spelling)
/// and the refusal message; otherwise nullopt. The list lives in one table in
/// generation_config.cpp, so that adding beam search or a new logits processor is a one-line edit.
std::optional<std::pair<std::string, std::string>> unsupported_feature(
    const GenerationConfig& config);

}  // namespace servelab
