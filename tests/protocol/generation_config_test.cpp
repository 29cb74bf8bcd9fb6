#include "protocol/generation_config.h"

#include <gtest/gtest.h>

#include <string>

#include "protocol/protocol_error.h"

namespace servelab {
namespace {

// Validates and returns the ProtocolError's param and message ("" when accepted).
std::pair<std::string, std::string> validation_error(
    const GenerationConfig& config, FieldSpelling spelling = FieldSpelling::kNative,
    const ProtocolLimits& limits = {}) {
  try {
    config.validate(limits, spelling);
    return {"", ""};
  } catch (const ProtocolError& error) {
    EXPECT_EQ(error.status(), 400);
    EXPECT_EQ(error.type(), "invalid_request_error");
    return {error.param(), error.what()};
  }
}

TEST(GenerationConfig, DefaultsAreGreedySixteenTokensEverythingOff) {
  GenerationConfig config;
  EXPECT_EQ(config.max_new_tokens, 16);
  EXPECT_EQ(config.min_new_tokens, 0);
  EXPECT_FALSE(config.do_sample);
  EXPECT_TRUE(config.is_greedy());
  EXPECT_EQ(config.num_beams, 1);
  EXPECT_EQ(config.num_return_sequences, 1);
  EXPECT_FALSE(config.seed.has_value());
  EXPECT_TRUE(config.stop.empty());
  EXPECT_EQ(validation_error(config).first, "");
}

TEST(GenerationConfig, EqualityIsExactOnEveryField) {
  const GenerationConfig base;
  EXPECT_EQ(base, GenerationConfig());
  auto differs = [&](auto change) {
    GenerationConfig other;
    change(other);
    return other != base && !(other == base);
  };
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.max_new_tokens = 17; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.min_new_tokens = 1; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.do_sample = true; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.temperature = 1.0000001; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.top_k = 5; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.top_p = 0.9; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.typical_p = 0.9; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.repetition_penalty = 1.1; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.presence_penalty = 0.5; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.frequency_penalty = 0.5; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.num_beams = 2; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.length_penalty = 0.5; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.early_stopping = "never"; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.num_return_sequences = 2; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.seed = 0; }));  // set to 0 != unset
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.stop = {"\n"}; }));
  EXPECT_TRUE(differs([](GenerationConfig& c) { c.ignore_eos = true; }));
}

TEST(GenerationConfig, StopOrderMattersForEquality) {
  GenerationConfig first, second;
  first.stop = {"a", "b"};
  second.stop = {"b", "a"};
  EXPECT_NE(first, second);
}

TEST(GenerationConfig, GreedyWhenDoSampleFalseOrTemperatureZero) {
  GenerationConfig config;
  config.temperature = 0.7;
  config.do_sample = false;
  EXPECT_EQ(config.to_sampling_params().temperature, 0.0f);
  config.do_sample = true;
  EXPECT_FLOAT_EQ(config.to_sampling_params().temperature, 0.7f);
  config.temperature = 0.0;
  EXPECT_TRUE(config.to_sampling_params().is_greedy());
}

TEST(GenerationConfig, ToSamplingParamsCopiesFiltersPenaltyAndSeed) {
  GenerationConfig config;
  config.do_sample = true;
  config.top_k = 40;
  config.top_p = 0.9;
  config.repetition_penalty = 1.3;
  SamplingParams params = config.to_sampling_params(/*default_seed=*/77);
  EXPECT_EQ(params.top_k, 40);
  EXPECT_FLOAT_EQ(params.top_p, 0.9f);
  EXPECT_FLOAT_EQ(params.repetition_penalty, 1.3f);
  EXPECT_EQ(params.seed, 77u);  // no seed: the server's
  config.seed = 5;
  EXPECT_EQ(config.to_sampling_params(77).seed, 5u);
  EXPECT_NO_THROW(config.to_sampling_params().validate());
}

TEST(GenerationConfig, TinyValidTopPDoesNotBecomeAnInvalidFloatZero) {
  GenerationConfig config;
  config.top_p = 1e-300;
  config.repetition_penalty = 1e-300;
  EXPECT_EQ(validation_error(config).first, "");
  EXPECT_NO_THROW(config.to_sampling_params().validate());
}

TEST(GenerationConfig, RangeErrorsNameTheFieldInTheClientsSpelling) {
  struct Case {
    void (*change)(GenerationConfig&);
    const char* native;
    const char* openai;
  };
  const Case cases[] = {
      {[](GenerationConfig& c) { c.max_new_tokens = 0; }, "generation_config.max_new_tokens",
       "max_tokens"},
      {[](GenerationConfig& c) { c.max_new_tokens = -5; }, "generation_config.max_new_tokens",
       "max_tokens"},
      {[](GenerationConfig& c) { c.min_new_tokens = -1; }, "generation_config.min_new_tokens",
       "min_tokens"},
      {[](GenerationConfig& c) { c.min_new_tokens = 17; }, "generation_config.min_new_tokens",
       "min_tokens"},
      {[](GenerationConfig& c) { c.temperature = -0.1; }, "generation_config.temperature",
       "temperature"},
      {[](GenerationConfig& c) { c.temperature = 101; }, "generation_config.temperature",
       "temperature"},
      {[](GenerationConfig& c) { c.top_k = -1; }, "generation_config.top_k", "top_k"},
      {[](GenerationConfig& c) { c.top_k = 1LL << 40; }, "generation_config.top_k", "top_k"},
      {[](GenerationConfig& c) { c.top_p = 0; }, "generation_config.top_p", "top_p"},
      {[](GenerationConfig& c) { c.top_p = 1.01; }, "generation_config.top_p", "top_p"},
      {[](GenerationConfig& c) { c.typical_p = 0; }, "generation_config.typical_p", "typical_p"},
      {[](GenerationConfig& c) { c.repetition_penalty = 0; },
       "generation_config.repetition_penalty", "repetition_penalty"},
      {[](GenerationConfig& c) { c.presence_penalty = 2.5; }, "generation_config.presence_penalty",
       "presence_penalty"},
      {[](GenerationConfig& c) { c.frequency_penalty = -3; }, "generation_config.frequency_penalty",
       "frequency_penalty"},
      {[](GenerationConfig& c) { c.num_beams = 0; }, "generation_config.num_beams", "num_beams"},
      {[](GenerationConfig& c) { c.num_return_sequences = 0; },
       "generation_config.num_return_sequences", "n"},
      {[](GenerationConfig& c) { c.num_return_sequences = 17; },
       "generation_config.num_return_sequences", "n"},
      {[](GenerationConfig& c) { c.stop = {""}; }, "generation_config.stop", "stop"},
      {[](GenerationConfig& c) { c.stop = std::vector<std::string>(9, "x"); },
       "generation_config.stop", "stop"},
      {[](GenerationConfig& c) { c.stop = {std::string(257, 'x')}; }, "generation_config.stop",
       "stop"},
  };
  for (const Case& test_case : cases) {
    GenerationConfig config;
    test_case.change(config);
    auto native = validation_error(config, FieldSpelling::kNative);
    EXPECT_EQ(native.first, test_case.native) << native.second;
    EXPECT_NE(native.second.find(std::string("'") + test_case.native + "'"), std::string::npos)
        << native.second;
    EXPECT_EQ(validation_error(config, FieldSpelling::kOpenAi).first, test_case.openai);
  }
}

TEST(GenerationConfig, RangeMessageSaysTheRangeAndTheValue) {
  GenerationConfig config;
  config.top_p = 1.5;
  EXPECT_EQ(validation_error(config, FieldSpelling::kOpenAi).second,
            "'top_p' must be in (0, 1], got 1.5");
}

TEST(GenerationConfig, UnsupportedFeaturesAreRefusedNotIgnored) {
  auto refused = [](void (*change)(GenerationConfig&), const std::string& field) {
    GenerationConfig config;
    change(config);
    auto error = validation_error(config, FieldSpelling::kOpenAi);
    EXPECT_EQ(error.first, field);
    EXPECT_NE(error.second.find("not supported by this server yet"), std::string::npos)
        << error.second;
    ASSERT_TRUE(unsupported_feature(config).has_value());
    EXPECT_EQ(unsupported_feature(config)->first, field);
  };
  refused([](GenerationConfig& c) { c.presence_penalty = 0.5; }, "presence_penalty");
  refused([](GenerationConfig& c) { c.frequency_penalty = -0.5; }, "frequency_penalty");
  EXPECT_FALSE(unsupported_feature(GenerationConfig()).has_value());
}

TEST(GenerationConfig, SupportedFieldsAtTheirBoundsAreAccepted) {
  GenerationConfig config;
  config.max_new_tokens = 1;
  config.min_new_tokens = 1;
  config.do_sample = true;
  config.temperature = 0;
  config.top_k = 0;
  config.top_p = 1;
  config.repetition_penalty = 100;
  config.num_return_sequences = 16;
  config.seed = UINT64_MAX;
  config.stop = std::vector<std::string>(8, std::string(256, 'x'));
  config.ignore_eos = true;
  EXPECT_EQ(validation_error(config).second, "");
}

TEST(GenerationConfig, BeamSearchSettingsAreCheckedAndNumBeamsHasALimit) {
  GenerationConfig config;
  config.num_beams = 4;
  config.num_return_sequences = 4;
  config.length_penalty = -2;
  config.early_stopping = "never";
  EXPECT_EQ(validation_error(config).second, "");
  config.early_stopping = "sometimes";
  EXPECT_EQ(validation_error(config).first, "generation_config.early_stopping");
  config.early_stopping = "true";
  config.num_return_sequences = 5;
  EXPECT_EQ(validation_error(config).first, "generation_config.num_return_sequences");
  config.num_return_sequences = 1;
  config.num_beams = 9;
  EXPECT_NE(validation_error(config).second.find("this server's limit"), std::string::npos);
}

TEST(GenerationConfig, LimitsComeFromProtocolLimits) {
  ProtocolLimits limits;
  limits.max_return_sequences = 2;
  GenerationConfig config;
  config.num_return_sequences = 3;
  auto error = validation_error(config, FieldSpelling::kOpenAi, limits);
  EXPECT_EQ(error.first, "n");
  EXPECT_NE(error.second.find("[1, 2]"), std::string::npos) << error.second;
}

TEST(GenerationConfig, SpelledFieldMapsNativeAndOpenAiNames) {
  EXPECT_EQ(spelled_field("max_new_tokens", FieldSpelling::kOpenAi), "max_tokens");
  EXPECT_EQ(spelled_field("min_new_tokens", FieldSpelling::kOpenAi), "min_tokens");
  EXPECT_EQ(spelled_field("num_return_sequences", FieldSpelling::kOpenAi), "n");
  EXPECT_EQ(spelled_field("top_p", FieldSpelling::kOpenAi), "top_p");
  EXPECT_EQ(spelled_field("top_p", FieldSpelling::kNative), "generation_config.top_p");
}

TEST(ContextLength, MessageIsExactAndFitsAtTheBoundary) {
  EXPECT_NO_THROW(check_context_length(512, 500, 12));
  try {
    check_context_length(512, 500, 13);
    ADD_FAILURE() << "accepted 500 + 13 > 512";
  } catch (const ProtocolError& error) {
    EXPECT_EQ(error.status(), 400);
    EXPECT_EQ(std::string(error.what()),
              "This model's maximum context length is 512 tokens; the request needs 500 + 13");
    EXPECT_EQ(error.param(), "max_tokens");
    EXPECT_EQ(error.code(), "context_length_exceeded");
  }
}

TEST(ContextLength, HugeMaxTokensDoesNotOverflow) {
  EXPECT_THROW(check_context_length(512, 10, INT64_MAX), ProtocolError);
  EXPECT_THROW(check_context_length(512, 513, 1), ProtocolError);
}

}  // namespace
}  // namespace servelab
