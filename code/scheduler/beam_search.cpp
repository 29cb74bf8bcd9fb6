// Beam search (see beam_search.h).
#include "scheduler/beam_search.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "common/error.h"

namespace servelab {

BeamSearch::BeamSearch(BeamSearchConfig config) : config_(std::move(config)) {
  if (config_.num_beams < 1) fail("beam search needs num_beams >= 1, got ", config_.num_beams);
  if (config_.num_return_sequences < 1 || config_.num_return_sequences > config_.num_beams)
    fail("beam search returns 1 to num_beams (", config_.num_beams, ") sequences, asked for ",
         config_.num_return_sequences);
  if (config_.max_new_tokens < 1) fail("beam search needs max_new_tokens >= 1");
}

bool BeamSearch::is_eos(int32_t token) const {
  return std::find(config_.eos_ids.begin(), config_.eos_ids.end(), token) != config_.eos_ids.end();
}

std::vector<BeamContinuation> BeamSearch::step(
    const std::vector<const float*>& log_probs, int32_t vocab,
    const std::vector<std::vector<int32_t>>& beam_tokens) {
  if (done_) fail("beam search: step() after done()");
  if (log_probs.size() != beam_scores_.size() || beam_tokens.size() != beam_scores_.size())
    fail("beam search: step() got ", log_probs.size(), " beams' log-probabilities and ",
         beam_tokens.size(), " token lists for ", beam_scores_.size(), " running beams");
  const int64_t beams = static_cast<int64_t>(beam_scores_.size());
  const int64_t num_beams = config_.num_beams;
  const int64_t generated = static_cast<int64_t>(beam_tokens.front().size());

  // 1. The best `keep` of beam score + next log-prob over all beams and tokens, best first; ties
  //    go to the lower (beam, token) index. Masked (-inf) tokens are never candidates.
  const int64_t keep =
      std::max<int64_t>(2, 1 + static_cast<int64_t>(config_.eos_ids.size())) * num_beams;
  struct Candidate {
    double score;
    int64_t index;  // beam * vocab + token
  };
  auto better = [](const Candidate& a, const Candidate& b) {
    return a.score > b.score || (a.score == b.score && a.index < b.index);
  };
  std::vector<Candidate> top;  // a heap whose front is the worst kept candidate
  top.reserve(static_cast<size_t>(keep) + 1);
  for (int64_t beam = 0; beam < beams; ++beam) {
    const float* row = log_probs[static_cast<size_t>(beam)];
    for (int32_t token = 0; token < vocab; ++token) {
      if (std::isinf(row[token]) && row[token] < 0) continue;
      const Candidate candidate{beam_scores_[static_cast<size_t>(beam)] + row[token],
                                beam * vocab + token};
      if (static_cast<int64_t>(top.size()) < keep) {
        top.push_back(candidate);
        std::push_heap(top.begin(), top.end(), better);
      } else if (better(candidate, top.front())) {
        std::pop_heap(top.begin(), top.end(), better);
        top.back() = candidate;
        std::push_heap(top.begin(), top.end(), better);
      }
    }
  }
  std::sort(top.begin(), top.end(), better);
  if (static_cast<int64_t>(top.size()) < num_beams)
    fail("beam search: only ", top.size(), " possible continuations for ", num_beams,
         " beams (the vocabulary is too small or masked out)");

  // 2. A candidate ends when its token is EOS or it reaches the budget.
  const bool at_budget = generated + 1 >= config_.max_new_tokens;
  std::vector<bool> ends(top.size());
  bool all_end = true;
  for (size_t rank = 0; rank < top.size(); ++rank) {
    ends[rank] = at_budget || is_eos(static_cast<int32_t>(top[rank].index % vocab));
    all_end = all_end && ends[rank];
  }

  // 3. The next beams: the best num_beams candidates that go on (ending ones only if too few go
  //    on, and then with a score of -1e9, as Hugging Face's penalty; only at the budget).
  std::vector<size_t> order(top.size());
  for (size_t rank = 0; rank < top.size(); ++rank) order[rank] = rank;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return !ends[a] && ends[b]; });
  std::vector<BeamContinuation> next;
  for (int64_t i = 0; i < num_beams; ++i) {
    const size_t rank = order[static_cast<size_t>(i)];
    next.push_back({top[rank].index / vocab, static_cast<int32_t>(top[rank].index % vocab),
                    top[rank].score - (ends[rank] ? 1e9 : 0.0)});
  }

  // 4. Finished hypotheses: ending candidates ranked within the first num_beams, scored with the
  //    length including the new token; merged with the earlier ones, the num_beams best stay.
  //    Nothing is added once the search could stop (all slots full with early_stopping true, or
  //    no improvement possible).
  const bool full = static_cast<int64_t>(finished_.size()) == num_beams;
  if (!(full && config_.early_stopping == EarlyStopping::kFirst) && improvement_possible_) {
    const double length_factor =
        std::pow(static_cast<double>(generated + 1), config_.length_penalty);
    std::vector<BeamHypothesis> merged = finished_;
    for (int64_t rank = 0; rank < num_beams && rank < static_cast<int64_t>(top.size()); ++rank) {
      if (!ends[static_cast<size_t>(rank)]) continue;
      const Candidate& candidate = top[static_cast<size_t>(rank)];
      const int32_t token = static_cast<int32_t>(candidate.index % vocab);
      BeamHypothesis hypothesis;
      hypothesis.tokens = beam_tokens[static_cast<size_t>(candidate.index / vocab)];
      hypothesis.ended_with_eos = is_eos(token);
      if (!hypothesis.ended_with_eos) hypothesis.tokens.push_back(token);
      hypothesis.score = candidate.score / length_factor;
      merged.push_back(std::move(hypothesis));
    }
    // Best first; among equal scores the earlier (kept before, or better ranked) first.
    std::stable_sort(
        merged.begin(), merged.end(),
        [](const BeamHypothesis& a, const BeamHypothesis& b) { return a.score > b.score; });
    if (static_cast<int64_t>(merged.size()) > num_beams)
      merged.resize(static_cast<size_t>(num_beams));
    finished_ = std::move(merged);
  }

  steps_ += 1;
  beam_scores_.clear();
  for (const BeamContinuation& continuation : next) beam_scores_.push_back(continuation.score);

  // 5. Can a running beam still beat the worst finished hypothesis? Judged on the best running
  //    beam at the current length (at the longest, for "never" with a length reward).
  const bool all_slots_full = static_cast<int64_t>(finished_.size()) == num_beams;
  if (all_slots_full) {
    const double length =
        config_.early_stopping == EarlyStopping::kNever && config_.length_penalty > 0
            ? static_cast<double>(config_.max_new_tokens)
            : static_cast<double>(generated + 1);
    const double best_running = beam_scores_.front() / std::pow(length, config_.length_penalty);
    improvement_possible_ = improvement_possible_ && best_running > finished_.back().score;
  }
  done_ = !improvement_possible_ ||
          (all_slots_full && config_.early_stopping == EarlyStopping::kFirst) || all_end;
  return next;
}

std::vector<BeamHypothesis> BeamSearch::finalize() const {
  std::vector<BeamHypothesis> best = finished_;
  best.resize(std::min<size_t>(best.size(), static_cast<size_t>(config_.num_return_sequences)));
  return best;
}

}  // namespace servelab
