#include "engine/generator.h"

#include <algorithm>
#include <chrono>

#include "common/error.h"
#include "sampling/sampler.h"
#include "tokenizer/incremental_detokenizer.h"

namespace servelab {

GenerationResult Generator::generate(const std::string& prompt, const GenerationOptions& options,
                                     const std::function<void(const std::string&)>& on_text) {
  return generate_from_ids(tokenizer_.encode(prompt), options, on_text);
}

GenerationResult Generator::generate_from_ids(
    const std::vector<int32_t>& prompt_ids, const GenerationOptions& options,
    const std::function<void(const std::string&)>& on_text) {
  const ModelConfig& config = model_.config();
  const int64_t context = config.max_position_embeddings;
  const int64_t prompt_length = static_cast<int64_t>(prompt_ids.size());
  if (prompt_ids.empty()) fail("the prompt is empty (no tokens)");
  if (options.max_new_tokens < 1)
    fail("max new tokens must be at least 1, got ", options.max_new_tokens);
  if (prompt_length >= context) {
    fail("This model's maximum context length is ", context, " tokens; the prompt alone has ",
         prompt_length);
  }
  // Generation stops at the context's end: the last token generated needs no position of its own.
  const int64_t budget = std::min(options.max_new_tokens, context - prompt_length);

  GenerationResult result;
  result.prompt_token_ids = prompt_ids;
  result.finish_reason = "length";
  Sampler sampler(options.sampling);
  IncrementalDetokenizer detokenizer(tokenizer_, prompt_ids);
  ContiguousKvCache cache = model_.new_kv_cache(prompt_length + budget);
  std::vector<int32_t> history = prompt_ids;  // for the repetition penalty
  std::vector<ForwardSequence> batch = {{prompt_ids, &cache}};

  auto emit = [&](const std::string& piece) {
    if (piece.empty()) return;
    result.text += piece;
    if (on_text) on_text(piece);
  };
  using Clock = std::chrono::steady_clock;
  auto started = Clock::now();
  auto first_token_at = started;
  for (int64_t step = 0; step < budget; ++step) {
    // BEGIN LAB(lab01-generate-loop)
    // One step: run the new tokens (the whole prompt at step 0, then the last token), pick the
    // next token from the last position's logits, and decide whether to stop. EOS ends the
    // request unless ignore_eos; it is kept in token_ids but contributes no text.
    Tensor logits = model_.forward(batch);  // [1, vocab]
    int32_t token = sampler.sample(logits.f32(), static_cast<int32_t>(config.vocab_size), history);
    if (step == 0) first_token_at = Clock::now();
    result.token_ids.push_back(token);
    history.push_back(token);
    if (!options.ignore_eos && tokenizer_.is_eos(token)) {
      result.finish_reason = "stop";
      break;
    }
    emit(detokenizer.push(token));
    batch[0].tokens = {token};
    // END LAB
  }
  emit(detokenizer.finish());
  auto finished = Clock::now();
  result.prefill_seconds = std::chrono::duration<double>(first_token_at - started).count();
  result.decode_seconds = std::chrono::duration<double>(finished - first_token_at).count();
  return result;
}

}  // namespace servelab
