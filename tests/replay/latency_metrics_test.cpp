// The latency metrics, computed exactly on scripted timings.
#include "replay/latency_metrics.h"

#include <gtest/gtest.h>

#include <vector>

#include "replay/request_timings.h"

namespace servelab {
namespace {

using testing::streamed;

TEST(LatencyMetrics, OneRequestsTtftItlTpotAndE2e) {
  const RequestLatency latency = latency_of(streamed(1.0, {1.5, 1.6, 1.8, 2.1}, 2.1, 4));
  EXPECT_DOUBLE_EQ(latency.ttft, 0.5);
  EXPECT_DOUBLE_EQ(latency.e2e, 1.1);
  ASSERT_EQ(latency.itl.size(), 3u);
  EXPECT_NEAR(latency.itl[1], 0.2, 1e-12);
  EXPECT_NEAR(latency.tpot, 0.6 / 3, 1e-12);
  const RequestLatency whole = latency_of(streamed(0, {}, 0.7, 5));
  EXPECT_DOUBLE_EQ(whole.ttft, 0.7) << "a whole answer's first token is its end";
  EXPECT_EQ(latency_of(streamed(0, {0.2}, 0.2, 1)).tpot, 0);
}

TEST(LatencyMetrics, NearestRankPercentiles) {
  std::vector<double> values;
  for (int i = 100; i >= 1; --i) values.push_back(i);
  const Percentiles p = percentiles_of(values);
  EXPECT_EQ(p.count, 100);
  EXPECT_DOUBLE_EQ(p.mean, 50.5);
  EXPECT_EQ(p.median, 50);
  EXPECT_EQ(p.p90, 90);
  EXPECT_EQ(p.p99, 99);
  EXPECT_EQ(percentiles_of({7}).p99, 7);
  EXPECT_EQ(percentiles_of({}).count, 0);
}

TEST(LatencyMetrics, ThroughputGoodputAndErrorsOverARun) {
  std::vector<RequestTiming> run = {
      streamed(0, {0.1, 0.2, 0.3}, 0.3, 3),  // ttft 0.1, tpot 0.1: meets both
      streamed(0.5, {1.5, 1.6}, 1.6, 2),     // ttft 1.0: misses the TTFT SLO
      streamed(1.0, {1.1, 2.1}, 2.1, 2),     // tpot 1.0: misses the TPOT SLO
      streamed(1.5, {1.6, 1.7}, 2.0, 4),     // ttft 0.1, tpot 0.4/3: meets both
  };
  RequestTiming refused;
  refused.sent = 1.2;
  refused.finished = 1.25;
  refused.ok = false;
  refused.error = "429";
  run.push_back(refused);
  const RunSummary summary = summarize(run, Slo{0.5, 0.2});
  EXPECT_EQ(summary.requests, 5);
  EXPECT_EQ(summary.succeeded, 4);
  EXPECT_EQ(summary.failed, 1);
  EXPECT_DOUBLE_EQ(summary.duration_seconds, 2.1);
  EXPECT_NEAR(summary.request_throughput, 4 / 2.1, 1e-12);
  EXPECT_NEAR(summary.output_token_throughput, 11 / 2.1, 1e-12);
  EXPECT_EQ(summary.met_slo, 2);
  EXPECT_NEAR(summary.goodput, 2 / 2.1, 1e-12);
  EXPECT_EQ(summary.ttft.count, 4);
  EXPECT_NEAR(summary.ttft.median, 0.1, 1e-12);
  EXPECT_NEAR(summary.ttft.p99, 1.0, 1e-12);
  ASSERT_EQ(summary.errors.size(), 1u);
  EXPECT_EQ(summary.errors[0], (std::pair<std::string, int64_t>{"429", 1}));
}

}  // namespace
}  // namespace servelab
