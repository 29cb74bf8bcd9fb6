// Synthetic traces have the requested rate, burstiness and lengths; the transforms do what they
// say.
#include "replay/synthetic.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/error.h"

namespace servelab {
namespace {

/// Mean and coefficient of variation of the gaps between arrivals.
std::pair<double, double> gap_statistics(const std::vector<TraceRequest>& trace) {
  std::vector<double> gaps;
  for (size_t i = 1; i < trace.size(); ++i)
    gaps.push_back(trace[i].arrival_seconds - trace[i - 1].arrival_seconds);
  double mean = 0;
  for (double gap : gaps) mean += gap / gaps.size();
  double variance = 0;
  for (double gap : gaps) variance += (gap - mean) * (gap - mean) / gaps.size();
  return {mean, std::sqrt(variance) / mean};
}

TEST(SyntheticTrace, ArrivalsHaveTheRequestedRateAndBurstiness) {
  // Gamma gaps of shape k: coefficient of variation 1/sqrt(k), kurtosis 3 + 6/k. Over n gaps the
  // sample mean's relative standard error is cv/sqrt(n) and the sample standard deviation's about
  // sqrt((kurtosis - 1) / (4n)); the tolerances are four of them.
  const double n = 40000;
  for (const auto& [rate, burstiness] :
       std::vector<std::pair<double, double>>{{5.0, 1.0}, {20.0, 0.25}, {2.0, 4.0}}) {
    SyntheticTraceOptions options;
    options.requests = static_cast<int64_t>(n) + 1;
    options.rate = rate;
    options.burstiness = burstiness;
    options.seed = 7;
    const auto [mean, cv] = gap_statistics(synthesize_trace(options));
    const double expected_cv = 1.0 / std::sqrt(burstiness);
    EXPECT_NEAR(mean * rate, 1.0, 4 * expected_cv / std::sqrt(n)) << "rate " << rate;
    EXPECT_NEAR(cv / expected_cv, 1.0, 4 * std::sqrt((2 + 6 / burstiness) / (4 * n)))
        << "burstiness " << burstiness;
  }
}

TEST(SyntheticTrace, LengthsFollowTheirDistributionsAndTheSeedRepeatsTheTrace) {
  SyntheticTraceOptions options;
  options.requests = 20000;
  options.prompt = parse_length_distribution("uniform:10:30");
  options.output = parse_length_distribution("capped-exp:50:120");
  const std::vector<TraceRequest> trace = synthesize_trace(options);
  double prompt_mean = 0;
  int64_t capped = 0;
  for (const TraceRequest& request : trace) {
    EXPECT_GE(request.prompt_tokens, 10);
    EXPECT_LE(request.prompt_tokens, 30);
    EXPECT_LE(request.output_tokens, 120);
    prompt_mean += static_cast<double>(request.prompt_tokens) / trace.size();
    capped += request.output_tokens == 120;
  }
  EXPECT_NEAR(prompt_mean, 20, 0.3);
  // P(exp(mean 50) > 119.5) = e^-2.39 = 9.2%.
  EXPECT_NEAR(static_cast<double>(capped) / trace.size(), 0.092, 0.01);
  EXPECT_EQ(parse_length_distribution("fixed:64").value, 64);
  EXPECT_EQ(synthesize_trace(options)[123].output_tokens, trace[123].output_tokens);
  EXPECT_THROW(parse_length_distribution("normal:5"), Error);
  EXPECT_THROW(parse_length_distribution("uniform:9:3"), Error);
  options.rate = 0;
  EXPECT_THROW(synthesize_trace(options), Error);
}

TEST(TraceTransforms, WindowSpeedRateLimitAndContext) {
  std::vector<TraceRequest> trace;
  for (int i = 0; i < 10; ++i) trace.push_back({i * 2.0, 100 * (i + 1), 40, {}});
  const auto window = time_window(trace, 4, 10);
  ASSERT_EQ(window.size(), 3u);
  EXPECT_EQ(window[0].arrival_seconds, 0);
  EXPECT_EQ(window[2].arrival_seconds, 4);
  EXPECT_EQ(speed_up(trace, 2)[9].arrival_seconds, 9);
  EXPECT_NEAR(at_rate(trace, 2.0)[9].arrival_seconds, 4.5, 1e-12) << "9 gaps at 2 per second";
  EXPECT_EQ(first_requests(trace, 3).size(), 3u);
  const auto fitted = fit_to_context(trace, 0.5, 256);
  EXPECT_EQ(fitted[0].prompt_tokens, 50);
  EXPECT_EQ(fitted[0].output_tokens, 20);
  EXPECT_EQ(fitted[9].prompt_tokens, 255) << "500 tokens clipped to leave one for the answer";
  EXPECT_EQ(fitted[9].output_tokens, 1);
  for (const TraceRequest& request : fitted)
    EXPECT_LE(request.prompt_tokens + request.output_tokens, 256);
  EXPECT_THROW(speed_up(trace, 0), Error);
  EXPECT_THROW(time_window(trace, 5, 5), Error);
}

TEST(SyntheticTrace, TheBuiltInAzureShapedTraceHasItsMeansAndFitsTheContext) {
  const std::vector<TraceRequest> trace = synthesize_trace(azure_conversation_like(4000, 4.0, 512));
  double prompt = 0, output = 0;
  for (const TraceRequest& request : trace) {
    prompt += static_cast<double>(request.prompt_tokens) / trace.size();
    output += static_cast<double>(request.output_tokens) / trace.size();
  }
  EXPECT_NEAR(prompt, 1155 * 0.25, 8) << "the trace's mean prompt, scaled by 512 / 2048";
  EXPECT_NEAR(output, 211 * 0.25, 3);
  for (const TraceRequest& request : fit_to_context(trace, 1.0, 512))
    EXPECT_LE(request.prompt_tokens + request.output_tokens, 512);
}

}  // namespace
}  // namespace servelab
