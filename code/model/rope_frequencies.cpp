#include "model/rope_frequencies.h"

#include <cmath>

namespace servelab {

std::vector<float> rope_inverse_frequencies(int64_t head_dim, double theta,
                                            const RopeScaling& scaling) {
  const int64_t half = head_dim / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    // HF: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), in fp32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(theta), exponent);
  }
  const float factor = static_cast<float>(scaling.factor);
  switch (scaling.type) {
    case RopeScaling::Type::kNone:
      break;
    case RopeScaling::Type::kLinear:
      // Positions are compressed by `factor`, which is the same as slowing every frequency.
      for (float& frequency : inv_freq) frequency /= factor;
      break;
    case RopeScaling::Type::kLlama3: {
      // Llama 3.1's rule: wavelengths longer than the original context / low_freq_factor are
      // slowed by `factor`; shorter than original / high_freq_factor are kept; in between, a
      // linear blend in 1/wavelength.
      const float original = static_cast<float>(scaling.original_max_position_embeddings);
      const float low = static_cast<float>(scaling.low_freq_factor);
      const float high = static_cast<float>(scaling.high_freq_factor);
      const float low_freq_wavelength = original / low;
      const float high_freq_wavelength = original / high;
      for (float& frequency : inv_freq) {
        const float wavelength = 2.0f * static_cast<float>(M_PI) / frequency;
        if (wavelength > low_freq_wavelength) {
          frequency = frequency / factor;
        } else if (wavelength >= high_freq_wavelength) {
          const float smooth = (original / wavelength - low) / (high - low);
          frequency = (1.0f - smooth) * frequency / factor + smooth * frequency;
        }
      }
      break;
    }
  }
  return inv_freq;
}

}  // namespace servelab
