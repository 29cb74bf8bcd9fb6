#include "sampling/sampler.h"

#include <cmath>

#include "common/error.h"

namespace servelab {
namespace {

SamplingParams validated(const SamplingParams& params) {
  params.validate();
  return params;
}

}  // namespace

Sampler::Sampler(const SamplingParams& params)
    : params_(validated(params)), generator_(params.seed) {}

int32_t Sampler::sample(const float* logits, int32_t vocab_size,
                        const std::vector<int32_t>& previous_tokens) {
  if (logits == nullptr) fail("Sampler::sample: logits is null");
  if (vocab_size <= 0) fail("Sampler::sample: vocab_size is ", vocab_size, ", expected > 0");
  working_logits_.assign(logits, logits + vocab_size);
  for (int32_t i = 0; i < vocab_size; ++i) {
    if (std::isnan(working_logits_[i]) ||
        (std::isinf(working_logits_[i]) && working_logits_[i] > 0)) {
      fail("Sampler::sample: logits[", i, "] is ", working_logits_[i],
           "; the model produced a non-finite score (check the weights and the forward pass)");
    }
  }

  // Hugging Face's order: the penalty acts on the model's own scores, before any reshaping; it
  // also applies to greedy decoding, where it is the only processor.
  if (params_.repetition_penalty != 1.0f) {
    apply_repetition_penalty(working_logits_, previous_tokens, params_.repetition_penalty);
  }
  if (params_.is_greedy()) return argmax(working_logits_);

  // Temperature before the filters, because top-p depends on the shape it gives the distribution.
  if (params_.temperature != 1.0f) apply_temperature(working_logits_, params_.temperature);
  if (params_.top_k > 0) top_k_filter(working_logits_, params_.top_k);
  // top-p then measures its nucleus within the top-k survivors (renormalised).
  if (params_.top_p < 1.0f) top_p_filter(working_logits_, params_.top_p);
  if (params_.typical_p < 1.0f) typical_filter(working_logits_, params_.typical_p);
  const std::vector<float> probabilities = softmax(working_logits_);
  return sample_from_probabilities(probabilities, generator_.uniform01());
}

}  // namespace servelab
