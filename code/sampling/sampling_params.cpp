#include "sampling/sampling_params.h"

#include <cmath>

#include "common/error.h"

namespace servelab {

void SamplingParams::validate() const {
  // Comparisons are written so that NaN (for which every comparison is false) fails them.
  if (!(std::isfinite(temperature) && temperature >= 0.0f)) {
    fail("sampling parameter temperature is ", temperature,
         ", expected a finite number >= 0 (0 means greedy)");
  }
  if (top_k < 0) {
    fail("sampling parameter top_k is ", top_k, ", expected an integer >= 0 (0 turns top-k off)");
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    fail("sampling parameter top_p is ", top_p,
         ", expected a number in (0, 1] (1 turns top-p off)");
  }
  if (!(typical_p > 0.0f && typical_p <= 1.0f)) {
    fail("sampling parameter typical_p is ", typical_p,
         ", expected a number in (0, 1] (1 turns typical sampling off)");
  }
  if (!(std::isfinite(repetition_penalty) && repetition_penalty > 0.0f)) {
    fail("sampling parameter repetition_penalty is ", repetition_penalty,
         ", expected a finite number > 0 (1 turns the penalty off)");
  }
}

}  // namespace servelab
