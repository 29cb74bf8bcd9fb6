// One choice's output on its way to the client, shared by the static and the continuous engines:
// the sampler and its token history, min/max new tokens, EOS, stop strings (held back from the
// stream until they can no longer begin one), incremental detokenization, and the kText /
// kFinished events on the request's channel. It knows nothing of batches, caches or schedules.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protocol/generation_config.h"
#include "sampling/sampler.h"
#include "scheduler/serving.h"
#include "tokenizer/incremental_detokenizer.h"
#include "tokenizer/tokenizer.h"

namespace servelab {

/// The length of the longest suffix of `text` that is a proper prefix of one of `stops`: those
/// bytes may still become a stop string, so they are not streamed yet.
size_t stop_prefix_held_back(const std::string& text, const std::vector<std::string>& stops);

/// The earliest stop string in `text` that ends after byte `old_size` (text before it was
/// already searched, or came before min_new_tokens and must not stop the choice); npos if none.
size_t find_stop(const std::string& text, size_t old_size, const std::vector<std::string>& stops);

/// One choice (index `index` of its request). Feed it the logits of each step with next_token();
/// it samples, detokenizes, streams and, when the choice ends, sends its kFinished event.
///
/// completion_tokens counts every generated token, EOS and the stop string's tokens included, as
/// Generator's token_ids does. Greedy choices give exactly Generator's tokens.
class ChoiceOutput {
 public:
  /// @param prompt the request's prompt tokens (BOS included), for the detokenizer's context and
  ///               the repetition penalty's history
  /// @param budget new tokens at most (max_new_tokens clamped to the context)
  /// @param seed   the sampler's seed for this choice (the request's seed plus the index, so the
  ///               n choices differ and repeat with the same seed)
  ChoiceOutput(const Tokenizer& tokenizer, const std::vector<int32_t>& prompt,
               const GenerationConfig& config, int index, int64_t budget, uint64_t seed,
               std::shared_ptr<OutputChannel> output);

  /// Samples the next token from fp32 `logits` [vocab] (EOS masked out before min_new_tokens),
  /// streams what it completes, and finishes the choice on EOS, a stop string or the budget.
  /// @return the token sampled.
  int32_t next_token(const float* logits, int32_t vocab);
  /// The same for a token chosen elsewhere (a greedy() choice's argmax taken on the device).
  void accept_token(int32_t token);
  /// Ends the choice now with `finish_reason` (e.g. "abort"), sending what it holds.
  void finish(const std::string& finish_reason);

  bool done() const { return done_; }
  int index() const { return index_; }
  int64_t generated() const { return generated_; }
  /// Whether this choice's sampling is plain argmax with nothing that looks at the logits first.
  bool greedy() const;

 private:
  /// Appends text; returns true when a stop string now ends the choice.
  bool append(const std::string& piece);
  void send_text(size_t end);

  const Tokenizer& tokenizer_;
  GenerationConfig config_;  // a copy: the choice may outlive the request it came from
  int index_;
  int64_t budget_;
  Sampler sampler_;
  IncrementalDetokenizer detokenizer_;
  std::shared_ptr<OutputChannel> output_;
  std::vector<int32_t> history_;  // prompt + generated, for the repetition penalty
  std::vector<float> masked_;     // scratch: logits with EOS masked out
  int64_t generated_ = 0;
  std::string text_;  // the choice's text so far (cut before a stop string once one is found)
  size_t sent_ = 0;   // bytes of text_ already streamed
  bool done_ = false;
};

}  // namespace servelab
