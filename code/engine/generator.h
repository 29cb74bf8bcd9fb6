// Single-request text generation: prefill the prompt, then decode one token at a time until EOS,
// a token budget or the context runs out, streaming text as it becomes complete. This is the
// engine's simplest form, the one `servelab generate` uses; the servers batch many requests.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/llama_model.h"
#include "sampling/sampling_params.h"
#include "tokenizer/tokenizer.h"

namespace servelab {

struct GenerationOptions {
  int64_t max_new_tokens = 256;  ///< stop after this many tokens ("length")
  bool ignore_eos = false;       ///< keep going past EOS tokens (benchmarks, fixtures)
  SamplingParams sampling;
};

struct GenerationResult {
  std::vector<int32_t> prompt_token_ids;
  std::vector<int32_t> token_ids;  ///< generated, EOS included when it ended the generation
  std::string text;                ///< the generated text (EOS contributes none)
  std::string finish_reason;       ///< "stop" (EOS) or "length" (budget or context exhausted)
  double prefill_seconds = 0;      ///< the prompt's forward and the first token
  double decode_seconds = 0;       ///< every later token
};

class Generator {
 public:
  Generator(LlamaModel& model, const Tokenizer& tokenizer) : model_(model), tokenizer_(tokenizer) {}

  /// Encodes `prompt` (with BOS as the tokenizer is configured) and generates. `on_text` receives
  /// each newly complete piece of text (never half of a UTF-8 character).
  /// Throws servelab::Error if the prompt does not fit in the model's context.
  GenerationResult generate(const std::string& prompt, const GenerationOptions& options,
                            const std::function<void(const std::string&)>& on_text = {});
  GenerationResult generate_from_ids(const std::vector<int32_t>& prompt_ids,
                                     const GenerationOptions& options,
                                     const std::function<void(const std::string&)>& on_text = {});

 private:
  LlamaModel& model_;
  const Tokenizer& tokenizer_;
};

}  // namespace servelab
