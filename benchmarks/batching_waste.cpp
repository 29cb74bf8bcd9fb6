// servelab_bench_batching_waste: what static batching wastes, measured with the real engines on the
// embedded model (CPU): the same requests, all waiting at once, run through the StaticBatcher and
// through the ContinuousEngine. Reports, for the static batcher, the row-steps spent on rows that
// were already done (the batch's padding in time) and the KV positions reserved against those
// used; for both, the forward calls (steps) and the wall time. Output is JSON (stdout or --json);
// progress goes to stderr.
//
//   servelab_bench_batching_waste [--model DIR] [--requests N] [--max-new-tokens M]
//                                 [--package-max-workload W] [--seed S] [--json FILE]
//
// Requests: N story prompts of 8 to 40 tokens (from the corpus' openings), greedy, max_new_tokens M
// (the budget a client would send), and the model's own EOS: a story ends when the model ends it,
// which is what makes the rows of a package finish at different steps.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "bench_cli.h"
#include "common/error.h"
#include "model/llama_model.h"
#include "scheduler/continuous_engine.h"
#include "scheduler/static_batcher.h"
#include "tokenizer/tokenizer.h"

namespace servelab {
namespace {

struct Options {
  std::string model_dir = SERVELAB_SOURCE_DIR "/models/servelab-stories";
  int64_t requests = 32;
  int64_t max_new_tokens = 256;
  int64_t package_max_workload = 8;
  uint32_t seed = 1;
  std::string json_path;
};

Options parse(int argc, char** argv) {
  Options o;
  bench::parse_flags(
      argc, argv, 1,
      [&](const std::string& flag, const std::string& value) {
        if (flag == "--model")
          o.model_dir = value;
        else if (flag == "--requests")
          o.requests = std::stoll(value);
        else if (flag == "--max-new-tokens")
          o.max_new_tokens = std::stoll(value);
        else if (flag == "--package-max-workload")
          o.package_max_workload = std::stoll(value);
        else if (flag == "--seed")
          o.seed = static_cast<uint32_t>(std::stoul(value));
        else if (flag == "--json")
          o.json_path = value;
        else
          return false;
        return true;
      },
      " (see the header of benchmarks/batching_waste.cpp)");
  return o;
}

/// Story openings of different lengths; each request takes one, cut at a random word.
std::vector<std::string> prompts(const Options& o) {
  const std::vector<std::string> openings = {
      "Once upon a time, there was a little fox who lived in the forest with his mother and "
      "his two sisters.",
      "Tom had a red ball. He liked to throw it high in the air and catch it with both hands.",
      "One day, a girl named Lily went to the park with her dad. The sun was warm and the birds "
      "were singing.",
      "Ben and Mia wanted to build a boat. They looked for wood and rope near the river."};
  std::mt19937 random(o.seed);
  std::vector<std::string> result;
  for (int64_t i = 0; i < o.requests; ++i) {
    const std::string& opening = openings[static_cast<size_t>(i) % openings.size()];
    std::vector<size_t> spaces;
    for (size_t p = 0; p < opening.size(); ++p)
      if (opening[p] == ' ') spaces.push_back(p);
    const size_t cut = spaces[2 + random() % (spaces.size() - 2)];
    result.push_back(opening.substr(0, cut));
  }
  return result;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Submits every request at once and waits for all answers; returns the wall time and the
/// completion tokens of each request.
template <typename Engine>
std::pair<double, std::vector<int64_t>> run_all(Engine& engine, const Tokenizer& tokenizer,
                                                const std::vector<std::string>& texts,
                                                int64_t max_new_tokens) {
  std::vector<std::shared_ptr<OutputChannel>> outputs;
  const auto start = std::chrono::steady_clock::now();
  for (const std::string& text : texts) {
    ServingRequest request;
    request.prompt_tokens = tokenizer.encode(text);
    request.config.max_new_tokens = max_new_tokens;
    outputs.push_back(request.output);
    engine.submit(std::move(request));
  }
  std::vector<int64_t> tokens;
  for (size_t i = 0; i < outputs.size(); ++i) {
    while (true) {
      std::optional<OutputEvent> event = outputs[i]->receive(std::chrono::milliseconds(600000));
      if (!event) fail("request ", i, " got no answer within 10 minutes");
      if (event->kind == OutputEvent::Kind::kError) fail("request ", i, ": ", event->error);
      if (event->kind == OutputEvent::Kind::kFinished) {
        tokens.push_back(event->completion_tokens);
        break;
      }
    }
    if ((i + 1) % 8 == 0)
      std::fprintf(stderr, "[bench]   %zu/%zu answered\n", i + 1, outputs.size());
  }
  return {seconds_since(start), tokens};
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  CpuBackend backend;
  LlamaModel model = LlamaModel::load(o.model_dir, backend);
  Tokenizer tokenizer = Tokenizer::load(o.model_dir);
  const std::vector<std::string> texts = prompts(o);
  nlohmann::json out = {{"model", o.model_dir},
                        {"device", "cpu"},
                        {"requests", o.requests},
                        {"max_new_tokens", o.max_new_tokens},
                        {"package_max_workload", o.package_max_workload}};

  std::fprintf(stderr, "[bench] static batching: %lld requests, packages of %lld...\n",
               static_cast<long long>(o.requests), static_cast<long long>(o.package_max_workload));
  StaticBatcherOptions static_options;
  static_options.package_max_workload = o.package_max_workload;
  static_options.packaging_interval_seconds = 0.0;
  StaticBatcher batcher(model, tokenizer, static_options);
  batcher.start();
  const auto [static_seconds, static_tokens] = run_all(batcher, tokenizer, texts, o.max_new_tokens);
  const StaticBatcherStats stats = batcher.stats();
  batcher.stop(std::chrono::milliseconds(0));
  int64_t generated = 0;
  for (int64_t t : static_tokens) generated += t;
  const double idle_share = static_cast<double>(stats.idle_row_steps) /
                            static_cast<double>(stats.idle_row_steps + stats.computed_row_steps);
  const double kv_unused = 1.0 - static_cast<double>(stats.kv_positions_used) /
                                     static_cast<double>(stats.kv_positions_reserved);
  out["static"] = {{"seconds", static_seconds},
                   {"generated_tokens", generated},
                   {"packages", stats.packages},
                   {"forward_calls", stats.forward_calls},
                   {"computed_row_steps", stats.computed_row_steps},
                   {"idle_row_steps", stats.idle_row_steps},
                   {"idle_share", idle_share},
                   {"kv_positions_reserved", stats.kv_positions_reserved},
                   {"kv_positions_used", stats.kv_positions_used},
                   {"kv_unused_share", kv_unused}};
  std::fprintf(stderr,
               "[bench] static: %.1f s, %lld packages, %lld forward calls; %.1f%% of row-steps "
               "idle, %.1f%% of reserved KV positions unused\n",
               static_seconds, static_cast<long long>(stats.packages),
               static_cast<long long>(stats.forward_calls), 100 * idle_share, 100 * kv_unused);

  std::fprintf(stderr, "[bench] continuous batching, the same requests...\n");
  ContinuousEngineOptions continuous_options;
  continuous_options.scheduler.batch_max_beams = o.package_max_workload;
  continuous_options.scheduler.batch_max_tokens = 4096;
  continuous_options.scheduler.blocks.block_size = 16;
  continuous_options.scheduler.blocks.num_gpu_blocks = 4096;
  continuous_options.scheduler.blocks.num_cpu_blocks = 0;
  ContinuousEngine engine(model, tokenizer, continuous_options);
  engine.start();
  const auto [continuous_seconds, continuous_tokens] =
      run_all(engine, tokenizer, texts, o.max_new_tokens);
  const ContinuousEngineStats continuous = engine.stats();
  engine.stop(std::chrono::milliseconds(0));
  if (continuous_tokens != static_tokens)
    fail("the two engines generated different token counts for the same greedy requests");
  out["continuous"] = {{"seconds", continuous_seconds},
                       {"generated_tokens", generated},
                       {"forward_calls", continuous.steps},
                       {"max_running_sequences", continuous.max_running_sequences}};
  std::fprintf(stderr,
               "[bench] continuous (at most %lld running): %.1f s, %lld forward calls; "
               "%.2fx the static batcher's throughput\n",
               static_cast<long long>(o.package_max_workload), continuous_seconds,
               static_cast<long long>(continuous.steps), static_seconds / continuous_seconds);
  bench::write_json(out, o.json_path);
  return 0;
}

}  // namespace
}  // namespace servelab

int main(int argc, char** argv) {
  return servelab::bench::bench_main("servelab_bench_batching_waste", argc, argv, servelab::run);
}
