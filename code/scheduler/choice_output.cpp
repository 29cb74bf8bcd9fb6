// One choice's output (see choice_output.h).
#include "scheduler/choice_output.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "common/error.h"

namespace servelab {

size_t stop_prefix_held_back(const std::string& text, const std::vector<std::string>& stops) {
  size_t held = 0;
  for (const std::string& stop : stops) {
    const size_t longest = std::min(stop.size() - (stop.empty() ? 0 : 1), text.size());
    for (size_t length = longest; length > held; --length) {
      if (text.compare(text.size() - length, length, stop, 0, length) == 0) {
        held = length;
        break;
      }
    }
  }
  return held;
}

size_t find_stop(const std::string& text, size_t old_size, const std::vector<std::string>& stops) {
  size_t best = std::string::npos;
  for (const std::string& stop : stops) {
    if (stop.empty()) continue;
    const size_t from = old_size >= stop.size() - 1 ? old_size - (stop.size() - 1) : 0;
    const size_t found = text.find(stop, from);
    if (found != std::string::npos && found < best) best = found;
  }
  return best;
}

namespace {

SamplingParams params_for(const GenerationConfig& config, uint64_t seed) {
  SamplingParams params = config.to_sampling_params(seed);
  params.seed = seed;
  return params;
}

}  // namespace

ChoiceOutput::ChoiceOutput(const Tokenizer& tokenizer, const std::vector<int32_t>& prompt,
                           const GenerationConfig& config, int index, int64_t budget, uint64_t seed,
                           std::shared_ptr<OutputChannel> output)
    : tokenizer_(tokenizer),
      config_(config),
      index_(index),
      budget_(budget),
      sampler_(params_for(config, seed)),
      detokenizer_(tokenizer, prompt),
      output_(std::move(output)),
      history_(prompt) {}

bool ChoiceOutput::greedy() const {
  return sampler_.params().is_greedy() && sampler_.params().repetition_penalty == 1.0f &&
         (config_.ignore_eos || config_.min_new_tokens == 0);
}

int32_t ChoiceOutput::next_token(const float* logits, int32_t vocab) {
  if (done_) fail("ChoiceOutput: choice ", index_, " is already finished");
  if (!config_.ignore_eos && generated_ < config_.min_new_tokens) {
    // min_new_tokens: EOS may not be chosen yet (Hugging Face's MinNewTokensLength).
    masked_.assign(logits, logits + vocab);
    for (int32_t eos : tokenizer_.eos_ids())
      if (eos >= 0 && eos < vocab) masked_[static_cast<size_t>(eos)] = -INFINITY;
    logits = masked_.data();
  }
  const int32_t token = sampler_.sample(logits, vocab, history_);
  accept_token(token);
  return token;
}

void ChoiceOutput::accept_token(int32_t token) {
  if (done_) fail("ChoiceOutput: choice ", index_, " is already finished");
  generated_ += 1;
  history_.push_back(token);
  if (!config_.ignore_eos && tokenizer_.is_eos(token)) {
    finish("stop");
  } else if (append(detokenizer_.push(token))) {
    send_text(text_.size());
    OutputEvent event;
    event.kind = OutputEvent::Kind::kFinished;
    event.index = index_;
    event.finish_reason = "stop";
    event.completion_tokens = generated_;
    output_->send(std::move(event));
    done_ = true;
  } else if (generated_ >= budget_) {
    finish("length");
  }
}

void ChoiceOutput::finish(const std::string& finish_reason) {
  if (done_) return;
  std::string reason = finish_reason;
  if (append(detokenizer_.finish())) reason = "stop";
  send_text(text_.size());
  OutputEvent event;
  event.kind = OutputEvent::Kind::kFinished;
  event.index = index_;
  event.finish_reason = std::move(reason);
  event.completion_tokens = generated_;
  output_->send(std::move(event));
  done_ = true;
}

bool ChoiceOutput::append(const std::string& piece) {
  if (piece.empty()) return false;
  const size_t old_size = text_.size();
  text_ += piece;
  if (generated_ >= config_.min_new_tokens) {
    const size_t stop_at = find_stop(text_, old_size, config_.stop);
    if (stop_at != std::string::npos) {
      text_.resize(std::max(stop_at, sent_));
      return true;
    }
  }
  // Stream all but a tail that may still grow into a stop string, cut at a UTF-8 boundary.
  size_t end = text_.size() - stop_prefix_held_back(text_, config_.stop);
  while (end > sent_ && end < text_.size() &&
         (static_cast<unsigned char>(text_[end]) & 0xC0) == 0x80)
    --end;
  send_text(end);
  return false;
}

void ChoiceOutput::send_text(size_t end) {
  if (end <= sent_) return;
  OutputEvent event;
  event.kind = OutputEvent::Kind::kText;
  event.index = index_;
  event.text = text_.substr(sent_, end - sent_);
  sent_ = end;
  output_->send(std::move(event));
}

}  // namespace servelab
