// Beam search over one request's beams, with the rules of Hugging Face transformers' beam search
// (the vectorized `_beam_search` of transformers 4.50 and later, 5.x included): each step takes
// the 2 x num_beams best continuations over all beams; those that end (EOS, or the budget) and
// rank within the first num_beams become finished hypotheses scored by sum of log-probabilities /
// generated_length^length_penalty (EOS counted); the best num_beams that go on are the next
// beams; early stopping as `early_stopping` says. Pure logic over log-probabilities: it never
// sees the model, the KV cache or the scheduler (the engine maps "beam b continues from parent p"
// onto forks and frees of sequences).
#pragma once

#include <cstdint>
#include <vector>

namespace servelab {

/// When beam search may stop before the budget (Hugging Face's `early_stopping`).
enum class EarlyStopping {
  kHeuristic,  ///< false: stop when no running beam can beat the worst of num_beams hypotheses
  kFirst,      ///< true: stop as soon as num_beams hypotheses are finished
  kNever,  ///< "never": only at the budget (or when the heuristic at the longest length says so)
};

struct BeamSearchConfig {
  int64_t num_beams = 1;
  int64_t num_return_sequences = 1;
  double length_penalty = 1.0;  ///< score = sum of log-probs / generated_length^length_penalty
  EarlyStopping early_stopping = EarlyStopping::kHeuristic;
  std::vector<int32_t> eos_ids;  ///< empty (or ignore_eos): no hypothesis ever ends early
  int64_t max_new_tokens = 1;    ///< the budget
};

/// A running beam after a step: it continues beam `parent` (an index into the previous step's
/// running beams) with `token`.
struct BeamContinuation {
  int64_t parent = 0;
  int32_t token = 0;
  double score = 0;  ///< cumulative log-probability of its generated tokens
};

/// A finished hypothesis: the generated tokens (EOS not included) and its length-penalised score
/// (the length counts the EOS).
struct BeamHypothesis {
  std::vector<int32_t> tokens;
  double score = 0;
  bool ended_with_eos = false;
};

class BeamSearch {
 public:
  /// Throws servelab::Error for num_beams < 1 or num_return_sequences outside [1, num_beams].
  explicit BeamSearch(BeamSearchConfig config);

  /// One step. Before the first, there is one running beam (the prompt); after it, num_beams.
  /// @param log_probs one pointer per running beam, in order: the beam's next-token
  ///        log-probabilities after any logits processing, fp32 [vocab] on the host.
  /// @param beam_tokens the generated tokens of each running beam so far (all of one length).
  /// @return the next running beams (num_beams of them), best first. Also records this step's
  ///         finished hypotheses, and whether the search is done().
  std::vector<BeamContinuation> step(const std::vector<const float*>& log_probs, int32_t vocab,
                                     const std::vector<std::vector<int32_t>>& beam_tokens);
  /// True once no more steps are needed: the early-stopping rule says so, or the budget is used.
  bool done() const { return done_; }
  /// The running beams' cumulative scores (for the engine's bookkeeping and the tests).
  const std::vector<double>& beam_scores() const { return beam_scores_; }

  /// The answer: the best num_return_sequences finished hypotheses, best first.
  std::vector<BeamHypothesis> finalize() const;

 private:
  bool is_eos(int32_t token) const;

  BeamSearchConfig config_;
  std::vector<double> beam_scores_ = {0.0};
  /// The num_beams best finished hypotheses, best first (fewer until that many have finished).
  std::vector<BeamHypothesis> finished_;
  /// Hugging Face's is_early_stop_heuristic_unsatisfied: false once no running beam can beat the
  /// worst finished hypothesis; then nothing is added and the search ends.
  bool improvement_possible_ = true;
  int64_t steps_ = 0;
  bool done_ = false;
};

}  // namespace servelab
