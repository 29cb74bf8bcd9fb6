// The per-request sampler: turns one request's logits for one step into the next token, applying
// that request's own SamplingParams and drawing from that request's own random generator. It must
// never share state between requests, so a request's tokens for a given seed do not depend on
// which other requests are in the batch or in which order the engine samples them.
#pragma once

#include <cstdint>
#include <vector>

#include "sampling/logits_processors.h"
#include "sampling/random.h"
#include "sampling/sampling_params.h"

namespace servelab {

/// One per request, created at admission and kept for the request's lifetime (also across
/// preemption), because its generator state is part of the request.
class Sampler {
 public:
  /// Validates `params` (throws servelab::Error naming the bad field) and seeds the generator.
  explicit Sampler(const SamplingParams& params);

  /// Picks the next token: repetition penalty, then greedy argmax if params.is_greedy(); else
  /// temperature, top-k, top-p, softmax and one draw from the generator. Each non-greedy call draws
  /// exactly one random number, so the n-th sampled token always uses the n-th draw; greedy calls
  /// draw none.
  /// @param logits [vocab_size], fp32, host; not modified. Must not contain NaN or +inf (throws);
  ///        -inf (a masked token) is allowed.
  /// @param vocab_size > 0.
  /// @param previous_tokens prompt + generated token ids, each in [0, vocab_size); used only by the
  ///        repetition penalty.
  /// @return a token id in [0, vocab_size).
  int32_t sample(const float* logits, int32_t vocab_size,
                 const std::vector<int32_t>& previous_tokens);

  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  RandomGenerator generator_;
  std::vector<float> working_logits_;  // [vocab], reused so that a step does not allocate
};

}  // namespace servelab
