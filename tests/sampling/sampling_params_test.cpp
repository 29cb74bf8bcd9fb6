#include "sampling/sampling_params.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "common/error.h"

namespace servelab {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInfinity = std::numeric_limits<float>::infinity();

// Asserts that validate() throws servelab::Error and that the message names `field`.
void expect_invalid(const SamplingParams& params, const std::string& field) {
  try {
    params.validate();
    ADD_FAILURE() << "validate() accepted an invalid " << field;
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(field), std::string::npos)
        << "message does not name " << field << ": " << error.what();
  }
}

SamplingParams with_temperature(float value) {
  SamplingParams params;
  params.temperature = value;
  return params;
}
SamplingParams with_top_k(int32_t value) {
  SamplingParams params;
  params.top_k = value;
  return params;
}
SamplingParams with_top_p(float value) {
  SamplingParams params;
  params.top_p = value;
  return params;
}
SamplingParams with_penalty(float value) {
  SamplingParams params;
  params.repetition_penalty = value;
  return params;
}

TEST(SamplingParams, DefaultsAndBoundaryValuesAreValid) {
  EXPECT_NO_THROW(SamplingParams().validate());
  EXPECT_NO_THROW(with_temperature(0.0f).validate());
  EXPECT_NO_THROW(with_temperature(100.0f).validate());
  EXPECT_NO_THROW(with_top_k(0).validate());
  EXPECT_NO_THROW(with_top_k(1).validate());
  EXPECT_NO_THROW(with_top_p(1.0f).validate());
  EXPECT_NO_THROW(with_top_p(1e-6f).validate());
  EXPECT_NO_THROW(with_penalty(0.01f).validate());
  EXPECT_NO_THROW(with_penalty(3.0f).validate());
}

TEST(SamplingParams, RejectsNegativeOrNonFiniteTemperature) {
  expect_invalid(with_temperature(-0.1f), "temperature");
  expect_invalid(with_temperature(kNaN), "temperature");
  expect_invalid(with_temperature(kInfinity), "temperature");
}

TEST(SamplingParams, RejectsNegativeTopK) {
  expect_invalid(with_top_k(-1), "top_k");
}

TEST(SamplingParams, RejectsTopPOutsideZeroToOne) {
  expect_invalid(with_top_p(0.0f), "top_p");
  expect_invalid(with_top_p(-0.5f), "top_p");
  expect_invalid(with_top_p(1.0001f), "top_p");
  expect_invalid(with_top_p(kNaN), "top_p");
}

TEST(SamplingParams, RejectsNonPositiveOrNonFiniteRepetitionPenalty) {
  expect_invalid(with_penalty(0.0f), "repetition_penalty");
  expect_invalid(with_penalty(-1.0f), "repetition_penalty");
  expect_invalid(with_penalty(kNaN), "repetition_penalty");
  expect_invalid(with_penalty(kInfinity), "repetition_penalty");
}

TEST(SamplingParams, MessageStatesTheAllowedRange) {
  try {
    with_top_p(1.5f).validate();
    FAIL() << "top_p 1.5 accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("(0, 1]"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("1.5"), std::string::npos) << error.what();
  }
}

TEST(SamplingParams, GreedyMeansTemperatureZeroOrBelowTheOverflowFloor) {
  EXPECT_TRUE(with_temperature(0.0f).is_greedy());
  EXPECT_TRUE(with_temperature(1e-7f).is_greedy());
  EXPECT_FALSE(with_temperature(0.01f).is_greedy());
  EXPECT_FALSE(SamplingParams().is_greedy());
}

}  // namespace
}  // namespace servelab
