// The steps a Sampler is built from, each a plain function over one request's logits so it can be
// tested (and, in lab 02, written) on its own. They run on the host in fp32 and must never touch
// a random generator: randomness enters only through sample_from_probabilities' `uniform01`.
//
// Order, as Hugging Face's generate: apply_repetition_penalty, apply_temperature, top_k_filter,
// top_p_filter, softmax, sample_from_probabilities. Filters remove a token by setting its logit
// to -infinity, so that softmax gives it probability exactly 0.
//
// Ties: wherever tokens must be ranked, equal logits are ordered by token id, lower id first (the
// rule torch.argmax uses). So top_k = 1 and a tiny top_p both keep exactly the greedy token.
#pragma once

#include <cstdint>
#include <vector>

namespace servelab {

/// Hugging Face's repetition penalty (CTRL paper, Keskar et al. 2019): for each *distinct* token in
/// `previous_tokens`, a logit > 0 is divided by `penalty` and a logit <= 0 is multiplied by it, so
/// penalty > 1 always makes a seen token less likely. A token seen several times is penalised once.
/// @param logits [vocab], fp32, host; modified in place.
/// @param previous_tokens prompt and generated token ids, each in [0, vocab); throws otherwise.
/// @param penalty > 0; 1 leaves the logits unchanged.
void apply_repetition_penalty(std::vector<float>& logits,
                              const std::vector<int32_t>& previous_tokens, float penalty);

/// Index of the largest logit; ties go to the lowest index, as torch.argmax.
/// @param logits [vocab], fp32, host; must not be empty or contain NaN.
int32_t argmax(const std::vector<float>& logits);

/// Divides every logit by `temperature` (> 0): below 1 sharpens the distribution, above 1 flattens
/// it. (Temperature 0 is greedy and never reaches this function.)
/// @param logits [vocab], fp32, host; modified in place.
void apply_temperature(std::vector<float>& logits, float temperature);

/// probabilities[i] = exp(logits[i] - max) / sum_j exp(logits[j] - max). Subtracting the max keeps
/// exp() from overflowing; -inf logits get probability exactly 0.
/// @param logits [vocab], fp32, host; at least one must be finite, none NaN or +inf.
/// @return [vocab] probabilities, fp32, summing to 1 (up to rounding).
std::vector<float> softmax(const std::vector<float>& logits);

/// log(softmax(logits)), computed as logits - max - log(sum exp(logits - max)) so that it is
/// accurate far into the tail (beam search adds these up). -inf stays -inf.
std::vector<float> log_softmax(const std::vector<float>& logits);

/// Keeps the `top_k` largest logits and sets the rest to -inf; top_k = 0 or top_k >= vocab keeps
/// everything. Exactly top_k survive: among equal logits the lower token ids win (Hugging Face
/// keeps every token tied with the k-th; the two differ only on exact ties).
/// @param logits [vocab], fp32, host; modified in place.
void top_k_filter(std::vector<float>& logits, int32_t top_k);

/// Nucleus filtering (Holtzman et al. 2020), Hugging Face semantics: keeps the smallest set of most
/// likely tokens whose cumulative probability reaches `top_p`, and sets the rest to -inf. Going
/// down the tokens sorted by probability (ties: lower id first), a token is kept iff the tokens
/// before it add up to less than top_p; so the most likely token is always kept, and so is the
/// token that crosses top_p. top_p = 1 keeps everything. On an exact boundary (the kept tokens
/// summing to exactly top_p) floating-point rounding decides, as it does in Hugging Face.
/// @param logits [vocab], fp32, host; modified in place. Probabilities are softmax(logits).
/// @param top_p in (0, 1].
void top_p_filter(std::vector<float>& logits, float top_p);

/// Locally typical filtering, Hugging Face's TypicalLogitsWarper: with p = softmax(logits) and
/// H its entropy, tokens are sorted by |-log p - H| (ascending, ties: lower id first); going down
/// that order, the kept set grows until its probability reaches `mass` (the token that crosses it
/// is kept, and so is every token tied with it); the rest are set to -inf. At least one token is
/// kept. mass = 1 keeps everything.
/// @param logits [vocab], fp32, host; modified in place.
/// @param mass in (0, 1].
void typical_filter(std::vector<float>& logits, float mass);

/// Inverse-CDF sampling: the first token whose cumulative probability exceeds
/// uniform01 * (sum of probabilities). A token with probability 0 is never returned.
/// @param probabilities [vocab], fp32, host; >= 0 with a positive sum (need not be normalised).
/// @param uniform01 a uniform random number in [0, 1).
int32_t sample_from_probabilities(const std::vector<float>& probabilities, double uniform01);

}  // namespace servelab
