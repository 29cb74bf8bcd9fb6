// What one request asks of the sampler: temperature, top-k, top-p, repetition penalty and seed.
// A plain value type that the protocol layer fills in and validates once at admission; it must
// never hold per-request state (the random generator lives in the Sampler).
#pragma once

#include <cstdint>

namespace servelab {

/// Per-request sampling settings. The defaults sample from the model's own distribution
/// (temperature 1, no top-k, no top-p, no repetition penalty) with seed 0.
struct SamplingParams {
  /// Divides the logits before softmax. 0 means greedy (argmax); must be finite and >= 0.
  /// Temperatures below kGreedyTemperatureBelow are also greedy, because dividing by them would
  /// overflow the logits and the result is argmax in all but exact ties anyway.
  float temperature = 1.0f;
  /// Keep only the k most likely tokens. 0 turns it off; must be >= 0.
  int32_t top_k = 0;
  /// Keep the smallest set of most likely tokens whose probabilities add up to top_p.
  /// 1 turns it off; must be in (0, 1].
  float top_p = 1.0f;
  /// Locally typical sampling (Meister et al. 2023), Hugging Face's TypicalLogitsWarper: keep the
  /// tokens whose information is closest to the distribution's entropy, up to this much
  /// probability. 1 turns it off; must be in (0, 1]. Applied after top-p.
  float typical_p = 1.0f;
  /// Hugging Face's repetition penalty on every token already seen (prompt and output).
  /// 1 turns it off; > 1 discourages repeats, < 1 encourages them; must be finite and > 0.
  float repetition_penalty = 1.0f;
  /// Seeds this request's own random generator: same seed, same params, same logits -> same tokens.
  uint64_t seed = 0;

  static constexpr float kGreedyTemperatureBelow = 1e-5f;

  /// True when sample() takes the argmax (and so ignores top_k, top_p and the seed).
  bool is_greedy() const { return temperature < kGreedyTemperatureBelow; }

  /// Throws servelab::Error naming the first invalid field, its value and the allowed range.
  /// NaN is invalid everywhere.
  void validate() const;
};

}  // namespace servelab
