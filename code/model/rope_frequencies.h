// The rotary embedding's inverse frequencies, computed as Hugging Face computes them (in fp32),
// including the linear and llama3 rescalings that stretch a model to longer contexts.
#pragma once

#include <vector>

#include "model/model_config.h"

namespace servelab {

/// inv_freq[i] = 1 / theta^(2i / head_dim) for i in [0, head_dim/2), then rescaled:
/// linear divides every frequency by `factor`; llama3 divides only the low frequencies (long
/// wavelengths) by `factor`, keeps the high ones, and blends smoothly in between.
/// @return [head_dim / 2] fp32, host
std::vector<float> rope_inverse_frequencies(int64_t head_dim, double theta,
                                            const RopeScaling& scaling);

}  // namespace servelab
