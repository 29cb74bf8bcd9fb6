// `servelab generate`: load a model, generate from one prompt, stream the text to the terminal,
// and finish with a one-line summary on standard error.
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <nlohmann/json.hpp>

#include "backend/backend_factory.h"
#include "cli/arguments.h"
#include "cli/commands.h"
#include "common/error.h"
#include "engine/generator.h"
#include "model/model_config.h"

namespace servelab::cli {
namespace {

const char* kGenerateHelp = R"(usage: servelab generate [options]

Generates text from a prompt, streaming it as it is produced, then prints a summary line
(prompt tokens, generated tokens, tokens/s) on standard error.

options:
  --model DIR              Hugging Face model folder (default: the embedded model,
                           or $SERVELAB_MODEL when set)
  --prompt TEXT            the prompt (default: "Once upon a time")
  --max-tokens N           most tokens to generate (default: 256, or the model's
                           generation_config.json)
  --temperature T          0 = greedy (default: greedy, or the model's generation_config.json)
  --top-k K                keep the K most likely tokens (0 = off)
  --top-p P                nucleus sampling, in (0, 1] (1 = off)
  --repetition-penalty R   Hugging Face's repetition penalty (1 = off)
  --seed S                 random seed for sampling (default: 0)
  --ignore-eos             keep generating past the end-of-sequence token
  --device cpu|cuda        where to run (default: cpu; cuda needs a build with CUDA and a GPU)
  --dtype D                auto (default: the checkpoint's dtype on cuda, float32 on cpu),
                           float32, bfloat16 or float16 (cuda only)
  --json                   print one JSON object (ids, text, timings) instead of streaming
)";

}  // namespace

std::string default_model_dir() {
  if (const char* from_environment = std::getenv("SERVELAB_MODEL")) return from_environment;
  return SERVELAB_DEFAULT_MODEL_DIR;
}

int run_generate(const std::vector<std::string>& args) {
  if (asks_for_help(args)) {
    std::cout << kGenerateHelp;
    return 0;
  }
  Arguments options(args,
                    {"model", "prompt", "max-tokens", "temperature", "top-k", "top-p",
                     "repetition-penalty", "seed", "device", "dtype"},
                    {"ignore-eos", "json"});
  const std::string model_dir = options.get("model", default_model_dir());
  const std::string prompt = options.get("prompt", "Once upon a time");
  const bool as_json = options.has("json");

  BackendChoice choice;
  choice.device = options.get("device", "cpu");
  choice.dtype = options.get("dtype", "auto");
  choice.checkpoint_dtype = ModelConfig::load(model_dir).torch_dtype;
  std::unique_ptr<Backend> backend_owner = make_backend(choice);
  Backend& backend = *backend_owner;
  LlamaModel model = LlamaModel::load(model_dir, backend);
  const ModelConfig& config = model.config();
  Tokenizer tokenizer =
      Tokenizer::load(model_dir, SpecialTokens{config.bos_token_id, config.eos_token_ids});

  GenerationOptions generation;
  generation.max_new_tokens =
      options.get_int("max-tokens", config.generation.max_new_tokens.value_or(256));
  generation.ignore_eos = options.has("ignore-eos");
  // Like transformers: greedy unless the model's generation_config.json asks for sampling.
  const GenerationDefaults& defaults = config.generation;
  const double default_temperature =
      defaults.do_sample.value_or(false) ? defaults.temperature.value_or(1.0f) : 0.0;
  generation.sampling.temperature =
      static_cast<float>(options.get_double("temperature", default_temperature));
  generation.sampling.top_k =
      static_cast<int32_t>(options.get_int("top-k", defaults.top_k.value_or(0)));
  generation.sampling.top_p =
      static_cast<float>(options.get_double("top-p", defaults.top_p.value_or(1.0f)));
  generation.sampling.repetition_penalty = static_cast<float>(
      options.get_double("repetition-penalty", defaults.repetition_penalty.value_or(1.0f)));
  const long long seed = options.get_int("seed", 0);
  if (seed < 0) fail("--seed must be non-negative, got ", seed);
  generation.sampling.seed = static_cast<uint64_t>(seed);
  generation.sampling.validate();

  Generator generator(model, tokenizer);
  GenerationResult result;
  if (as_json) {
    result = generator.generate(prompt, generation);
  } else {
    std::cout << prompt << std::flush;
    result = generator.generate(prompt, generation, [](const std::string& piece) {
      std::cout << piece << std::flush;  // stream each piece as soon as it is complete
    });
    std::cout << std::endl;  // flush before the summary goes to stderr
  }

  const size_t generated = result.token_ids.size();
  const double seconds = result.prefill_seconds + result.decode_seconds;
  const double decode_rate =
      generated > 1 && result.decode_seconds > 0 ? (generated - 1) / result.decode_seconds : 0.0;
  if (as_json) {
    nlohmann::json out = {{"model", model_dir},
                          {"prompt", prompt},
                          {"prompt_token_ids", result.prompt_token_ids},
                          {"token_ids", result.token_ids},
                          {"text", result.text},
                          {"finish_reason", result.finish_reason},
                          {"prefill_seconds", result.prefill_seconds},
                          {"decode_seconds", result.decode_seconds},
                          {"device", backend.name()},
                          {"dtype", dtype_name(backend.compute_dtype())}};
    std::cout << out.dump() << "\n";
  } else {
    std::fprintf(stderr,
                 "[servelab] prompt tokens: %zu, generated tokens: %zu (%s), %.1f tokens/s "
                 "(%.3f s total; first token after %.1f ms, then %.1f tokens/s) on %s\n",
                 result.prompt_token_ids.size(), generated, result.finish_reason.c_str(),
                 seconds > 0 ? generated / seconds : 0.0, seconds, result.prefill_seconds * 1e3,
                 decode_rate, (backend.name() + " " + dtype_name(backend.compute_dtype())).c_str());
  }
  return 0;
}

}  // namespace servelab::cli
