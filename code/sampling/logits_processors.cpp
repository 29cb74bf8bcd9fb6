#include "sampling/logits_processors.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/error.h"

namespace servelab {
namespace {

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

// Sorting with a comparator that sees NaN is undefined behaviour (it can read out of bounds), so
// every function that ranks logits checks for NaN first.
void check_no_nan(const std::vector<float>& logits, const char* function_name) {
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) {
      fail(function_name, ": logits[", i, "] is NaN; the model produced a non-finite score");
    }
  }
}

}  // namespace

void apply_repetition_penalty(std::vector<float>& logits,
                              const std::vector<int32_t>& previous_tokens, float penalty) {
  if (!(std::isfinite(penalty) && penalty > 0.0f)) {
    fail("apply_repetition_penalty: penalty is ", penalty, ", expected a finite number > 0");
  }
  const int64_t vocab_size = static_cast<int64_t>(logits.size());
  for (size_t i = 0; i < previous_tokens.size(); ++i) {
    if (previous_tokens[i] < 0 || previous_tokens[i] >= vocab_size) {
      fail("apply_repetition_penalty: previous_tokens[", i, "] is ", previous_tokens[i],
           ", outside the vocabulary [0, ", vocab_size, ")");
    }
  }
  // BEGIN LAB(lab02-repetition-penalty)
  // Hugging Face gathers the logits of all previous tokens, then scatters the penalised values
  // back, so a token that occurs several times is penalised once, from its original logit.
  std::vector<bool> already_penalised(logits.size(), false);
  for (int32_t token : previous_tokens) {
    if (already_penalised[token]) continue;
    already_penalised[token] = true;
    // Dividing a negative logit would move it towards 0 and *raise* its probability; multiplying
    // makes it more negative, so penalty > 1 discourages the token whatever its sign.
    float& logit = logits[token];
    logit = logit > 0.0f ? logit / penalty : logit * penalty;
  }
  // END LAB
}

int32_t argmax(const std::vector<float>& logits) {
  if (logits.empty()) fail("argmax: the logits are empty (vocabulary size 0)");
  check_no_nan(logits, "argmax");
  int32_t best = 0;
  // Strictly greater: on a tie the earlier (lower) index stays, as torch.argmax.
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
  }
  return best;
}

void apply_temperature(std::vector<float>& logits, float temperature) {
  if (!(std::isfinite(temperature) && temperature > 0.0f)) {
    fail("apply_temperature: temperature is ", temperature,
         ", expected a finite number > 0 (temperature 0 means greedy: use argmax)");
  }
  // Divide rather than multiply by 1/temperature: it matches Hugging Face bit for bit.
  for (float& logit : logits) logit /= temperature;
}

std::vector<float> softmax(const std::vector<float>& logits) {
  if (logits.empty()) fail("softmax: the logits are empty (vocabulary size 0)");
  check_no_nan(logits, "softmax");
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  if (max_logit == std::numeric_limits<float>::infinity()) {
    fail("softmax: a logit is +inf (did a repetition_penalty close to 0 overflow it?)");
  }
  if (max_logit == kMinusInfinity) {
    fail("softmax: every logit is -inf, so every token has been filtered out");
  }
  std::vector<float> probabilities(logits.size());
  double sum = 0.0;  // double: a vocabulary of 10^5 small terms loses digits in a float sum
  for (size_t i = 0; i < logits.size(); ++i) {
    probabilities[i] = std::exp(logits[i] - max_logit);  // exp(-inf) = 0; the max gives 1
    sum += probabilities[i];
  }
  for (float& probability : probabilities) {
    probability = static_cast<float>(probability / sum);
  }
  return probabilities;
}

void top_k_filter(std::vector<float>& logits, int32_t top_k) {
  if (top_k < 0) fail("top_k_filter: top_k is ", top_k, ", expected >= 0 (0 turns it off)");
  check_no_nan(logits, "top_k_filter");
  if (top_k == 0 || static_cast<size_t>(top_k) >= logits.size()) return;
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  auto more_likely = [&logits](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  // nth_element is O(vocab): the first top_k entries of `order` become the k most likely tokens
  // (in no particular order), which is all we need.
  std::nth_element(order.begin(), order.begin() + top_k, order.end(), more_likely);
  for (size_t rank = static_cast<size_t>(top_k); rank < order.size(); ++rank) {
    logits[order[rank]] = kMinusInfinity;
  }
}

void top_p_filter(std::vector<float>& logits, float top_p) {
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    fail("top_p_filter: top_p is ", top_p, ", expected a number in (0, 1] (1 turns it off)");
  }
  check_no_nan(logits, "top_p_filter");
  // 1 keeps everything, even tail tokens that rounding in the cumulative sum would push past it.
  if (top_p >= 1.0f) return;
  // BEGIN LAB(lab02-top-p)
  const std::vector<float> probabilities = softmax(logits);
  // Most likely first; equal logits by lower token id, so the kept set is always the same.
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&logits](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  // Keep a token iff the tokens before it add up to less than top_p. The first token is always
  // kept (0 < top_p), and so is the token whose probability carries the sum past top_p.
  double probability_before = 0.0;
  size_t rank = 0;
  while (rank < order.size() && probability_before < top_p) {
    probability_before += probabilities[order[rank]];
    ++rank;
  }
  for (; rank < order.size(); ++rank) logits[order[rank]] = kMinusInfinity;
  // END LAB
}

std::vector<float> log_softmax(const std::vector<float>& logits) {
  if (logits.empty()) fail("log_softmax: the logits are empty");
  check_no_nan(logits, "log_softmax");
  const float max = *std::max_element(logits.begin(), logits.end());
  if (std::isinf(max) && max < 0) fail("log_softmax: every logit is -inf");
  double sum = 0.0;
  for (float logit : logits) sum += std::exp(static_cast<double>(logit) - max);
  const double log_sum = std::log(sum);
  std::vector<float> result(logits.size());
  for (size_t i = 0; i < logits.size(); ++i)
    result[i] = static_cast<float>(static_cast<double>(logits[i]) - max - log_sum);
  return result;
}

void typical_filter(std::vector<float>& logits, float mass) {
  if (!(mass > 0.0f && mass <= 1.0f)) {
    fail("typical_filter: mass is ", mass, ", expected a number in (0, 1] (1 turns it off)");
  }
  check_no_nan(logits, "typical_filter");
  if (mass >= 1.0f || logits.empty()) return;
  const std::vector<float> probabilities = softmax(logits);
  // The entropy H = -sum p log p, and each token's distance from it: |-log p - H|. Tokens with
  // p = 0 are infinitely far (Hugging Face's nansum skips their 0 * -inf).
  double entropy = 0.0;
  for (float p : probabilities)
    if (p > 0.0f) entropy -= p * std::log(static_cast<double>(p));
  std::vector<double> distance(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    const double p = probabilities[i];
    distance[i] =
        p > 0.0 ? std::fabs(-std::log(p) - entropy) : std::numeric_limits<double>::infinity();
  }
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&distance](int32_t a, int32_t b) {
    return distance[a] < distance[b] || (distance[a] == distance[b] && a < b);
  });
  // The first token (in that order) at which the cumulative probability reaches `mass`; every
  // token at most as far from H as it is kept.
  double cumulative = 0.0;
  size_t last = 0;
  for (size_t rank = 0; rank < order.size(); ++rank) {
    cumulative += probabilities[order[rank]];
    if (cumulative >= mass) break;
    last = rank + 1;
  }
  last = std::min(last, order.size() - 1);
  const double threshold = distance[order[last]];
  for (size_t i = 0; i < logits.size(); ++i)
    if (distance[i] > threshold) logits[i] = kMinusInfinity;
}

int32_t sample_from_probabilities(const std::vector<float>& probabilities, double uniform01) {
  if (probabilities.empty()) fail("sample_from_probabilities: the probabilities are empty");
  if (!(uniform01 >= 0.0 && uniform01 < 1.0)) {
    fail("sample_from_probabilities: uniform01 is ", uniform01, ", expected a number in [0, 1)");
  }
  double total = 0.0;
  for (size_t i = 0; i < probabilities.size(); ++i) {
    if (!(probabilities[i] >= 0.0f && std::isfinite(probabilities[i]))) {
      fail("sample_from_probabilities: probabilities[", i, "] is ", probabilities[i],
           ", expected a finite number >= 0");
    }
    total += probabilities[i];
  }
  if (!(total > 0.0)) fail("sample_from_probabilities: the probabilities sum to 0");
  // Scaling the target by the total (instead of assuming it is 1) keeps rounding in the softmax
  // from making the last tokens unreachable or the walk fall off the end.
  const double target = uniform01 * total;
  double cumulative = 0.0;
  int32_t last_possible = 0;
  for (size_t i = 0; i < probabilities.size(); ++i) {
    if (probabilities[i] == 0.0f) continue;  // a filtered token can never be chosen
    cumulative += probabilities[i];
    last_possible = static_cast<int32_t>(i);
    if (cumulative > target) return last_possible;
  }
  // Reached only if uniform01 * total rounded up to total.
  return last_possible;
}

}  // namespace servelab
