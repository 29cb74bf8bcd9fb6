// POST /generate: the native schema, every field, and every way a body can be wrong.
#include <gtest/gtest.h>

#include <string>

#include "protocol/request.h"
#include "protocol_test_helpers.h"

namespace servelab {
namespace {

using testing::expect_rejected;
using testing::parse;

constexpr ApiKind kNative = ApiKind::kNative;

TEST(NativeRequest, MinimalBodyGetsDefaults) {
  GenerateRequest request = parse(kNative, R"({"prompt": "Once upon a time"})");
  EXPECT_EQ(request.api, kNative);
  EXPECT_EQ(request.model, "servelab-stories");  // the served model when left out
  EXPECT_EQ(request.prompt, "Once upon a time");
  EXPECT_FALSE(request.stream);
  EXPECT_TRUE(request.include_usage);
  EXPECT_EQ(request.config, GenerationConfig());
}

TEST(NativeRequest, EveryGenerationConfigFieldIsRead) {
  GenerateRequest request = parse(kNative, R"({
    "model": "servelab-stories", "prompt": "p", "stream": true,
    "generation_config": {"max_new_tokens": 40, "min_new_tokens": 3, "do_sample": true,
      "temperature": 0.5, "top_k": 7, "top_p": 0.75, "typical_p": 1, "repetition_penalty": 1.2,
      "presence_penalty": 0, "frequency_penalty": 0.0, "num_beams": 1, "num_return_sequences": 2,
      "seed": 99, "stop": ["\n", "The end"], "ignore_eos": true, "length_penalty": 0.5,
      "early_stopping": "never"}})");
  const GenerationConfig& config = request.config;
  EXPECT_TRUE(request.stream);
  EXPECT_EQ(config.max_new_tokens, 40);
  EXPECT_EQ(config.min_new_tokens, 3);
  EXPECT_TRUE(config.do_sample);
  EXPECT_EQ(config.temperature, 0.5);
  EXPECT_EQ(config.top_k, 7);
  EXPECT_EQ(config.top_p, 0.75);
  EXPECT_EQ(config.repetition_penalty, 1.2);
  EXPECT_EQ(config.num_return_sequences, 2);
  ASSERT_TRUE(config.seed.has_value());
  EXPECT_EQ(*config.seed, 99u);
  EXPECT_EQ(config.stop, (std::vector<std::string>{"\n", "The end"}));
  EXPECT_TRUE(config.ignore_eos);
  EXPECT_EQ(config.length_penalty, 0.5);
  EXPECT_EQ(config.early_stopping, "never");
}

TEST(NativeRequest, NullMeansDefault) {
  GenerateRequest request = parse(kNative, R"({"prompt": "p", "model": null, "stream": null,
                   "generation_config": {"temperature": null, "seed": null, "stop": null}})");
  EXPECT_EQ(request.config, GenerationConfig());
  EXPECT_FALSE(request.stream);
}

TEST(NativeRequest, SameSettingsSpelledDifferentlyParseToEqualConfigs) {
  GenerateRequest a = parse(kNative, R"({"prompt": "a", "generation_config": {"top_k": 5}})");
  GenerateRequest b =
      parse(kNative, R"({"prompt": "b", "generation_config": {"top_k": 5.0, "top_p": 1}})");
  EXPECT_EQ(a.config, b.config);
}

TEST(NativeRequest, MalformedJsonIs400WithTheParsersReason) {
  expect_rejected(kNative, R"({"prompt": "p",)", 400, "", "not valid JSON");
  expect_rejected(kNative, "", 400, "", "not valid JSON");
  expect_rejected(kNative, "\"just a string\"", 400, "", "must be a JSON object, got string");
  expect_rejected(kNative, "[1, 2]", 400, "", "must be a JSON object, got array");
}

TEST(NativeRequest, InvalidUtf8IsRejectedAsInvalidJson) {
  expect_rejected(kNative, std::string("{\"prompt\": \"a\xff\xfe b\"}"), 400, "", "UTF-8");
}

TEST(NativeRequest, PromptMissingNullEmptyOrNotAStringIsRejected) {
  expect_rejected(kNative, R"({})", 400, "prompt", "'prompt' is required");
  expect_rejected(kNative, R"({"prompt": null})", 400, "prompt", "'prompt' is required");
  expect_rejected(kNative, R"({"prompt": ""})", 400, "prompt", "'prompt' must not be empty");
  expect_rejected(kNative, R"({"prompt": 5})", 400, "prompt",
                  "'prompt' must be a string, got number");
  expect_rejected(kNative, R"({"prompt": ["a"]})", 400, "prompt", "got array");
}

TEST(NativeRequest, UnknownModelIs404) {
  expect_rejected(kNative, R"({"prompt": "p", "model": "gpt-4"})", 404, "model",
                  "The model 'gpt-4' does not exist; this server serves 'servelab-stories'");
}

TEST(NativeRequest, UnknownFieldsAreRefusedAtBothLevels) {
  expect_rejected(kNative, R"({"prompt": "p", "max_tokens": 5})", 400, "max_tokens",
                  "Unrecognized request argument supplied: 'max_tokens'");
  expect_rejected(kNative, R"({"prompt": "p", "generation_config": {"max_new_token": 5}})", 400,
                  "generation_config.max_new_token", "'generation_config.max_new_token'");
  expect_rejected(kNative, R"({"prompt": "p", "generation_config": {"no_repeat_ngram_size": 3}})",
                  400, "generation_config.no_repeat_ngram_size", "known fields here");
}

TEST(NativeRequest, GenerationConfigMustBeAnObject) {
  expect_rejected(kNative, R"({"prompt": "p", "generation_config": [1]})", 400, "generation_config",
                  "'generation_config' must be a JSON object, got array");
}

TEST(NativeRequest, WrongTypesNameTheFieldAndBothTypes) {
  struct Case {
    const char* field;
    const char* value;
    const char* message;
  };
  const Case cases[] = {
      {"temperature", "\"0.5\"", "must be a number, got string"},
      {"temperature", "\"NaN\"", "must be a number, got string"},
      {"top_p", "true", "must be a number, got boolean"},
      {"typical_p", "[]", "must be a number, got array"},
      {"repetition_penalty", "{}", "must be a number, got object"},
      {"presence_penalty", "\"0\"", "must be a number, got string"},
      {"frequency_penalty", "\"0\"", "must be a number, got string"},
      {"max_new_tokens", "\"10\"", "must be an integer, got string"},
      {"max_new_tokens", "10.5", "must be an integer, got 10.5"},
      {"min_new_tokens", "false", "must be an integer, got boolean"},
      {"top_k", "\"5\"", "must be an integer, got string"},
      {"num_beams", "1.5", "must be an integer, got 1.5"},
      {"num_return_sequences", "\"2\"", "must be an integer, got string"},
      {"seed", "\"42\"", "must be an integer, got string"},
      {"seed", "0.5", "must be an integer, got 0.5"},
      {"do_sample", "1", "must be a boolean (true or false), got number"},
      {"do_sample", "\"true\"", "must be a boolean (true or false), got string"},
      {"ignore_eos", "0", "must be a boolean (true or false), got number"},
      {"stop", "\"\\n\"", "must be an array of strings, got string"},
      {"stop", "[\"a\", 3]", "must be an array of strings, but element 1 is number"},
  };
  for (const Case& test_case : cases) {
    const std::string body = std::string(R"({"prompt": "p", "generation_config": {")") +
                             test_case.field + "\": " + test_case.value + "}}";
    const std::string param = std::string("generation_config.") + test_case.field;
    expect_rejected(kNative, body, 400, param, "'" + param + "' " + test_case.message);
  }
  expect_rejected(kNative, R"({"prompt": "p", "stream": "yes"})", 400, "stream",
                  "'stream' must be a boolean");
  expect_rejected(kNative, R"({"prompt": "p", "model": 3})", 400, "model",
                  "'model' must be a string, got number");
}

TEST(NativeRequest, HugeAndNegativeNumbersAreRejectedNotWrapped) {
  expect_rejected(kNative, R"({"prompt": "p", "generation_config": {"max_new_tokens": 1e300}})",
                  400, "generation_config.max_new_tokens", "too large");
  expect_rejected(
      kNative, R"({"prompt": "p", "generation_config": {"max_new_tokens": 18446744073709551615}})",
      400, "generation_config.max_new_tokens", "too large");
  expect_rejected(kNative, R"({"prompt": "p", "generation_config": {"max_new_tokens": 1e400}})",
                  400, "", "not valid JSON: number overflow parsing '1e400'");
  expect_rejected(kNative, R"({"prompt": "p", "generation_config": {"max_new_tokens": -1}})", 400,
                  "generation_config.max_new_tokens", "must be >= 1, got -1");
  expect_rejected(kNative, R"({"prompt": "p", "generation_config": {"temperature": 1e300}})", 400,
                  "generation_config.temperature", "must be in [0, 100]");
  expect_rejected(kNative, R"({"prompt": "p", "generation_config": {"top_k": -3}})", 400,
                  "generation_config.top_k", "must be in [0, ");
}

TEST(NativeRequest, HugeButValidMaxNewTokensIsLeftToTheContextCheck) {
  GenerateRequest request = parse(
      kNative, R"({"prompt": "p", "generation_config": {"max_new_tokens": 9223372036854775807}})");
  EXPECT_EQ(request.config.max_new_tokens, INT64_MAX);
  EXPECT_THROW(
      check_context_length(512, 3, request.config.max_new_tokens, request.max_tokens_param()),
      ProtocolError);
}

TEST(NativeRequest, SeedsCoverTheWholeUint64RangeAndNegativeInt64) {
  EXPECT_EQ(
      *parse(kNative, R"({"prompt": "p", "generation_config": {"seed": 18446744073709551615}})")
           .config.seed,
      UINT64_MAX);
  EXPECT_EQ(*parse(kNative, R"({"prompt": "p", "generation_config": {"seed": -1}})").config.seed,
            UINT64_MAX);
  EXPECT_EQ(*parse(kNative, R"({"prompt": "p", "generation_config": {"seed": 0}})").config.seed,
            0u);
}

TEST(NativeRequest, RangeAndRefusalErrorsUseNativeFieldNames) {
  expect_rejected(kNative, R"({"prompt": "p", "generation_config": {"top_p": 0}})", 400,
                  "generation_config.top_p", "must be in (0, 1], got 0");
  expect_rejected(kNative, R"({"prompt": "p", "generation_config": {"num_beams": 40}})", 400,
                  "generation_config.num_beams", "this server's limit");
  expect_rejected(kNative, R"({"prompt": "p", "generation_config": {"early_stopping": 3}})", 400,
                  "generation_config.early_stopping", "must be true, false or \"never\"");
  expect_rejected(kNative, R"({"prompt": "p", "generation_config": {"typical_p": 1.5}})", 400,
                  "generation_config.typical_p", "must be in (0, 1], got 1.5");
}

}  // namespace
}  // namespace servelab
