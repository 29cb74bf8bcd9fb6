// `servelab generate` run as a user runs it: a separate process, its output read back.
// The embedded model's greedy tokens must equal those transformers produced for the same weights
// (tests/fixtures/embedded/reference.json, made by tests/fixtures/make_fixtures.py).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "test_paths.h"

namespace servelab {
namespace {

struct ProgramRun {
  int exit_code;
  std::string output;  // stdout and stderr together
};

ProgramRun run_servelab(const std::string& arguments) {
  std::string command = testing::binary_path("servelab") + " " + arguments + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t read = fread(buffer.data(), 1, buffer.size(), pipe))
    output.append(buffer.data(), read);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// Single-quotes an argument for the shell.
std::string shell_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

nlohmann::json embedded_reference() {
  std::ifstream in(testing::fixture_path("embedded/reference.json"));
  return nlohmann::json::parse(in);
}

TEST(CliGenerate, EmbeddedModelGreedyTokensEqualTransformers) {
  const nlohmann::json reference = embedded_reference();  // the loop must not outlive it
  ASSERT_EQ(reference["prompts"].size(), 3u);
  for (const auto& prompt : reference["prompts"]) {
    const std::string text = prompt["text"];
    ProgramRun run =
        run_servelab("generate --json --ignore-eos --max-tokens 32 --prompt " + shell_quoted(text));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    nlohmann::json result = nlohmann::json::parse(run.output);
    EXPECT_EQ(result["prompt_token_ids"], prompt["token_ids"]) << text;
    EXPECT_EQ(result["token_ids"], prompt["greedy_token_ids"]) << text;
    EXPECT_EQ(result["finish_reason"], "length");
  }
}

TEST(CliGenerate, StreamsPromptAndContinuationThenASummaryLine) {
  const auto prompt = embedded_reference()["prompts"][0];
  ProgramRun json_run =
      run_servelab("generate --json --max-tokens 12 --prompt " + shell_quoted(prompt["text"]));
  ASSERT_EQ(json_run.exit_code, 0) << json_run.output;
  const std::string text = nlohmann::json::parse(json_run.output)["text"];
  ProgramRun run =
      run_servelab("generate --max-tokens 12 --prompt " + shell_quoted(prompt["text"]));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(run.output.rfind(prompt["text"].get<std::string>() + text + "\n", 0), 0u) << run.output;
  EXPECT_NE(run.output.find("[servelab] prompt tokens: "), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("tokens/s"), std::string::npos) << run.output;
}

TEST(CliGenerate, SampledOutputIsReproducibleForASeedAndVariesAcrossSeeds) {
  auto tokens = [](const std::string& seed) {
    ProgramRun run = run_servelab(
        "generate --json --ignore-eos --max-tokens 16 --temperature 1.0 --top-p 0.95 "
        "--seed " +
        seed);
    EXPECT_EQ(run.exit_code, 0) << run.output;
    return nlohmann::json::parse(run.output)["token_ids"];
  };
  EXPECT_EQ(tokens("7"), tokens("7"));
  EXPECT_NE(tokens("7"), tokens("8"));
}

TEST(CliGenerate, LongHotSampledGenerationsStreamToTheEnd) {
  // Hot sampling from a random-weight model emits byte-fallback pieces that never form
  // characters: streaming must neither stall nor hang on them (an early detokenizer looped
  // forever here). The llama-mha fixture (context 256) is such a model.
  const std::string model = shell_quoted(testing::fixture_path("llama-mha"));
  for (const std::string seed : {"1", "2", "3"}) {
    ProgramRun run =
        run_servelab("generate --model " + model +
                     " --ignore-eos --max-tokens 240 --temperature 1.5 --seed " + seed);
    ASSERT_EQ(run.exit_code, 0) << run.output;
    EXPECT_NE(run.output.find("generated tokens: 240 (length)"), std::string::npos) << run.output;
  }
}

TEST(CliGenerate, RunsTheShardedFixtureWithTwoEosIds) {
  ProgramRun run = run_servelab("generate --json --max-tokens 8 --model " +
                                shell_quoted(testing::fixture_path("llama-linear-sharded")));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_LE(nlohmann::json::parse(run.output)["token_ids"].size(), 8u);
}

TEST(CliGenerate, BadInputGivesAClearErrorAndNonZeroExit) {
  ProgramRun missing = run_servelab("generate --model /nonexistent/model");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("/nonexistent/model/config.json: cannot open"), std::string::npos)
      << missing.output;

  ProgramRun unknown = run_servelab("generate --temprature 0.5");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.output.find("unknown option --temprature"), std::string::npos)
      << unknown.output;

  ProgramRun negative = run_servelab("generate --temperature -1");
  EXPECT_EQ(negative.exit_code, 1);
  EXPECT_NE(negative.output.find("temperature"), std::string::npos) << negative.output;

  ProgramRun not_a_number = run_servelab("generate --max-tokens lots");
  EXPECT_EQ(not_a_number.exit_code, 1);
  EXPECT_NE(not_a_number.output.find("--max-tokens must be an integer"), std::string::npos);

  std::string long_prompt;
  for (int i = 0; i < 600; ++i) long_prompt += "the lighthouse keeper ";
  ProgramRun too_long = run_servelab("generate --prompt " + shell_quoted(long_prompt));
  EXPECT_EQ(too_long.exit_code, 1);
  EXPECT_NE(too_long.output.find("maximum context length is 512 tokens"), std::string::npos)
      << too_long.output;

  ProgramRun command = run_servelab("frobnicate");
  EXPECT_EQ(command.exit_code, 2);
  EXPECT_NE(command.output.find("unknown command 'frobnicate'"), std::string::npos);
}

TEST(CliInspect, ListsConfigAndTensorsOfAShardedCheckpoint) {
  ProgramRun run = run_servelab("inspect --model " +
                                shell_quoted(testing::fixture_path("llama-linear-sharded")));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("LlamaForCausalLM, 3 layers"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("model.layers.2.mlp.down_proj.bias  F32 [64]"), std::string::npos)
      << run.output;
  EXPECT_NE(run.output.find("in 7 file(s)"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace servelab
