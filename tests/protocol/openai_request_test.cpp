// POST /v1/completions and /v1/chat/completions: OpenAI's fields mapped onto GenerationConfig.
#include <gtest/gtest.h>

#include <string>

#include "protocol/request.h"
#include "protocol_test_helpers.h"

namespace servelab {
namespace {

using testing::expect_rejected;
using testing::parse;

constexpr ApiKind kCompletions = ApiKind::kCompletions;
constexpr ApiKind kChat = ApiKind::kChatCompletions;

TEST(CompletionsRequest, MinimalBodyUsesOpenAiDefaults) {
  GenerateRequest request =
      parse(kCompletions, R"({"model": "servelab-stories", "prompt": "Once"})");
  EXPECT_EQ(request.api, kCompletions);
  EXPECT_EQ(request.prompt, "Once");
  EXPECT_EQ(request.config.max_new_tokens, 16);  // OpenAI's legacy default
  EXPECT_TRUE(request.config.do_sample);         // OpenAI always samples
  EXPECT_EQ(request.config.temperature, 1.0);
  EXPECT_FALSE(request.config.is_greedy());
  EXPECT_FALSE(request.stream);
  EXPECT_FALSE(request.include_usage);
}

TEST(CompletionsRequest, EveryFieldIsMapped) {
  GenerateRequest request = parse(kCompletions, R"({
    "model": "servelab-stories", "prompt": ["Once"], "max_tokens": 30, "temperature": 0,
    "top_p": 0.5, "n": 3, "stop": "\n", "seed": 7, "stream": true,
    "stream_options": {"include_usage": true}, "presence_penalty": 0, "frequency_penalty": 0,
    "top_k": 4, "repetition_penalty": 1.1, "min_tokens": 2, "ignore_eos": true, "user": "u1",
    "logprobs": null, "echo": false, "best_of": 1, "logit_bias": {}, "suffix": null})");
  const GenerationConfig& config = request.config;
  EXPECT_EQ(request.prompt, "Once");
  EXPECT_EQ(config.max_new_tokens, 30);
  EXPECT_TRUE(config.is_greedy());
  EXPECT_EQ(config.top_p, 0.5);
  EXPECT_EQ(config.num_return_sequences, 3);
  EXPECT_EQ(config.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(config.seed, std::optional<uint64_t>(7));
  EXPECT_TRUE(request.stream);
  EXPECT_TRUE(request.include_usage);
  EXPECT_EQ(config.top_k, 4);
  EXPECT_EQ(config.repetition_penalty, 1.1);
  EXPECT_EQ(config.min_new_tokens, 2);
  EXPECT_TRUE(config.ignore_eos);
}

TEST(CompletionsRequest, StopAcceptsAList) {
  GenerateRequest request =
      parse(kCompletions, R"({"model": "servelab-stories", "prompt": "p", "stop": ["a", "b"]})");
  EXPECT_EQ(request.config.stop, (std::vector<std::string>{"a", "b"}));
  expect_rejected(kCompletions, R"({"model": "servelab-stories", "prompt": "p", "stop": 3})", 400,
                  "stop", "'stop' must be a string or an array of strings, got number");
}

TEST(CompletionsRequest, ModelIsRequiredAndMustBeServed) {
  expect_rejected(kCompletions, R"({"prompt": "p"})", 400, "model", "'model' is required");
  expect_rejected(kCompletions, R"({"model": "llama", "prompt": "p"})", 404, "model",
                  "does not exist");
}

TEST(CompletionsRequest, PromptFormsOtherThanOneTextAreRefused) {
  const std::string head = R"({"model": "servelab-stories", )";
  expect_rejected(kCompletions, head + R"("prompt": ""})", 400, "prompt", "must not be empty");
  expect_rejected(kCompletions, head + R"("prompt": [""]})", 400, "prompt", "must not be empty");
  expect_rejected(kCompletions, head + R"("prompt": ["a", "b"]})", 400, "prompt",
                  "list of 2 elements");
  expect_rejected(kCompletions, head + R"("prompt": []})", 400, "prompt", "list of 0 elements");
  expect_rejected(kCompletions, head + R"("prompt": [1, 2, 3]})", 400, "prompt", "token ids");
  expect_rejected(kCompletions, head + R"("prompt": [[1, 2]]})", 400, "prompt", "token ids");
  expect_rejected(kCompletions, head + R"("prompt": 12})", 400, "prompt",
                  "'prompt' must be a string, got number");
  expect_rejected(kCompletions, head + R"("prompt": null})", 400, "prompt", "'prompt' is required");
}

TEST(CompletionsRequest, PenaltiesAreRefusedUntilSupported) {
  expect_rejected(kCompletions,
                  R"({"model": "servelab-stories", "prompt": "p", "presence_penalty": 0.5})", 400,
                  "presence_penalty", "not supported by this server yet");
  expect_rejected(kCompletions,
                  R"({"model": "servelab-stories", "prompt": "p", "frequency_penalty": 1})", 400,
                  "frequency_penalty", "not supported by this server yet");
}

TEST(CompletionsRequest, KnownButUnsupportedOpenAiFieldsAreRefusedUnlessNeutral) {
  const std::string head = R"({"model": "servelab-stories", "prompt": "p", )";
  expect_rejected(kCompletions, head + R"("logprobs": 0})", 400, "logprobs", "not supported");
  expect_rejected(kCompletions, head + R"("echo": true})", 400, "echo", "not supported");
  expect_rejected(kCompletions, head + R"("best_of": 3})", 400, "best_of", "not supported");
  expect_rejected(kCompletions, head + R"("logit_bias": {"50256": -100}})", 400, "logit_bias",
                  "not supported");
  expect_rejected(kCompletions, head + R"("suffix": "end"})", 400, "suffix", "not supported");
}

TEST(CompletionsRequest, UnknownFieldsAreRefusedLikeOpenAi) {
  expect_rejected(kCompletions, R"({"model": "servelab-stories", "prompt": "p", "max_token": 5})",
                  400, "max_token", "Unrecognized request argument supplied: 'max_token'");
}

TEST(CompletionsRequest, RangeErrorsUseOpenAiNames) {
  const std::string head = R"({"model": "servelab-stories", "prompt": "p", )";
  expect_rejected(kCompletions, head + R"("max_tokens": 0})", 400, "max_tokens",
                  "'max_tokens' must be >= 1, got 0");
  expect_rejected(kCompletions, head + R"("max_tokens": 1e300})", 400, "max_tokens", "too large");
  expect_rejected(kCompletions, head + R"("max_tokens": "many"})", 400, "max_tokens",
                  "'max_tokens' must be an integer, got string");
  expect_rejected(kCompletions, head + R"("temperature": -1})", 400, "temperature",
                  "'temperature' must be in [0, 100], got -1");
  expect_rejected(kCompletions, head + R"("temperature": "NaN"})", 400, "temperature",
                  "'temperature' must be a number, got string");
  expect_rejected(kCompletions, head + R"("top_p": 0})", 400, "top_p", "(0, 1]");
  expect_rejected(kCompletions, head + R"("top_k": -1})", 400, "top_k", "'top_k' must be in");
  expect_rejected(kCompletions, head + R"("n": 0})", 400, "n", "'n' must be in [1, 16]");
  expect_rejected(kCompletions, head + R"("n": 17})", 400, "n", "this server's limit");
  expect_rejected(kCompletions, head + R"("min_tokens": 20})", 400, "min_tokens",
                  "'min_tokens' must be in [0, max_tokens = 16]");
  expect_rejected(kCompletions, head + R"("repetition_penalty": 0})", 400, "repetition_penalty",
                  "(0, 100]");
  expect_rejected(kCompletions, head + R"("ignore_eos": "no"})", 400, "ignore_eos", "boolean");
  expect_rejected(kCompletions, head + R"("user": 5})", 400, "user", "string");
}

TEST(CompletionsRequest, StreamOptionsNeedStreamAndKnowOnlyIncludeUsage) {
  const std::string head = R"({"model": "servelab-stories", "prompt": "p", )";
  expect_rejected(kCompletions, head + R"("stream_options": {"include_usage": true}})", 400,
                  "stream_options", "only allowed when 'stream' is true");
  expect_rejected(kCompletions, head + R"("stream": true, "stream_options": {"include_usage": 1}})",
                  400, "stream_options.include_usage", "boolean");
  expect_rejected(kCompletions, head + R"("stream": true, "stream_options": {"x": true}})", 400,
                  "stream_options.x", "Unrecognized");
  expect_rejected(kCompletions, head + R"("stream": true, "stream_options": true})", 400,
                  "stream_options", "must be a JSON object, got boolean");
}

TEST(ChatRequest, MessagesAreRenderedThroughTheTemplate) {
  const std::string body = R"({"model": "servelab-stories", "messages": [
      {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]})";
  GenerateRequest plain = parse(kChat, body);
  EXPECT_EQ(plain.prompt, "System: Be brief.\n\nUser: Hi\n\nAssistant:");
  ASSERT_EQ(plain.messages.size(), 2u);
  EXPECT_EQ(plain.messages[1], (ChatMessage{"user", "Hi"}));
  GenerateRequest chatml =
      parse(kChat, body, ProtocolLimits(), ChatTemplate(ChatTemplateForm::kChatMl));
  EXPECT_EQ(chatml.prompt,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatRequest, DefaultsAndMaxTokensSpellings) {
  const std::string head =
      R"({"model": "servelab-stories", "messages": [{"role": "user", "content": "Hi"}])";
  ProtocolLimits limits;
  limits.default_chat_max_tokens = 100;
  EXPECT_EQ(parse(kChat, head + "}", limits).config.max_new_tokens, 100);
  EXPECT_EQ(parse(kChat, head + R"(, "max_tokens": 5})").config.max_new_tokens, 5);
  EXPECT_EQ(parse(kChat, head + R"(, "max_completion_tokens": 6})").config.max_new_tokens, 6);
  expect_rejected(kChat, head + R"(, "max_tokens": 5, "max_completion_tokens": 6})", 400,
                  "max_completion_tokens", "only one of");
  EXPECT_TRUE(parse(kChat, head + R"(, "temperature": 0.3})").config.do_sample);
}

TEST(ChatRequest, TextContentPartsAreJoined) {
  GenerateRequest request = parse(kChat, R"({"model": "servelab-stories", "messages": [
      {"role": "user", "content": [{"type": "text", "text": "Hello "},
                                   {"type": "text", "text": "there"}], "name": "ann"}]})");
  EXPECT_EQ(request.messages[0].content, "Hello there");
}

TEST(ChatRequest, BadMessagesNameTheMessage) {
  const std::string head = R"({"model": "servelab-stories", "messages": )";
  expect_rejected(kChat, R"({"model": "servelab-stories"})", 400, "messages", "is required");
  expect_rejected(kChat, head + "[]}", 400, "messages", "must not be empty");
  expect_rejected(kChat, head + R"("hi"})", 400, "messages", "must be an array");
  expect_rejected(kChat, head + R"(["hi"]})", 400, "messages[0]",
                  "'messages[0]' must be a JSON object, got string");
  expect_rejected(kChat, head + R"([{"content": "x"}]})", 400, "messages[0].role", "is required");
  expect_rejected(kChat, head + R"([{"role": "user"}]})", 400, "messages[0].content",
                  "is required");
  expect_rejected(kChat,
                  head + R"([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]})",
                  400, "messages[1].role", "'tool'");
  expect_rejected(kChat, head + R"([{"role": "user", "content": 5}]})", 400, "messages[0].content",
                  "got number");
  expect_rejected(
      kChat, head + R"([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})",
      400, "messages[0].content[0]", "not supported");
  expect_rejected(kChat, head + R"([{"role": "user", "content": "a", "tool_calls": []}]})", 400,
                  "messages[0].tool_calls", "Unrecognized");
}

TEST(ChatRequest, ToolsAndLogprobsAreRefusedUnlessNeutral) {
  const std::string head =
      R"({"model": "servelab-stories", "messages": [{"role": "user", "content": "Hi"}], )";
  EXPECT_NO_THROW(parse(kChat, head + R"("logprobs": false, "tools": [], "tool_choice": "none",
                                        "response_format": {"type": "text"}})"));
  expect_rejected(kChat, head + R"("logprobs": true})", 400, "logprobs", "not supported");
  expect_rejected(kChat, head + R"("tools": [{"type": "function"}]})", 400, "tools",
                  "not supported");
  expect_rejected(kChat, head + R"("response_format": {"type": "json_object"}})", 400,
                  "response_format", "not supported");
  expect_rejected(kChat, head + R"("prompt": "p"})", 400, "prompt", "Unrecognized");
}

TEST(ChatRequest, CompletionsFieldsAreNotChatFields) {
  expect_rejected(kCompletions, R"({"model": "servelab-stories", "prompt": "p", "messages": []})",
                  400, "messages", "Unrecognized");
}

}  // namespace
}  // namespace servelab
