// The Prometheus registry: exposition format of counters, gauges and histograms, label escaping,
// and refusal of misuse.
#include "server/metrics.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "common/error.h"

namespace servelab {
namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(MetricsRegistry, RendersCountersAndGaugesWithHelpTypeAndLabels) {
  MetricsRegistry metrics;
  metrics.add_counter("x_total", "Things counted.");
  metrics.add_gauge("y", "A level.");
  metrics.increment("x_total", {{"reason", "stop"}}, 2);
  metrics.increment("x_total", {{"reason", "stop"}});
  metrics.increment("x_total", {{"reason", "length"}});
  metrics.set_gauge("y", 0.5);
  const std::string text = metrics.render();
  EXPECT_TRUE(contains(text, "# HELP x_total Things counted.\n# TYPE x_total counter\n")) << text;
  EXPECT_TRUE(contains(text, "x_total{reason=\"stop\"} 3\n")) << text;
  EXPECT_TRUE(contains(text, "x_total{reason=\"length\"} 1\n")) << text;
  EXPECT_TRUE(contains(text, "# TYPE y gauge\ny 0.5\n")) << text;
  EXPECT_EQ(metrics.value("x_total", {{"reason", "stop"}}), 3);
}

TEST(MetricsRegistry, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  MetricsRegistry metrics;
  metrics.add_histogram("latency_seconds", "Latency.", {0.1, 1});
  metrics.observe("latency_seconds", 0.05);
  metrics.observe("latency_seconds", 0.5);
  metrics.observe("latency_seconds", 5);
  const std::string text = metrics.render();
  EXPECT_TRUE(contains(text, "# TYPE latency_seconds histogram\n")) << text;
  EXPECT_TRUE(contains(text, "latency_seconds_bucket{le=\"0.1\"} 1\n")) << text;
  EXPECT_TRUE(contains(text, "latency_seconds_bucket{le=\"1\"} 2\n")) << text;
  EXPECT_TRUE(contains(text, "latency_seconds_bucket{le=\"+Inf\"} 3\n")) << text;
  EXPECT_TRUE(contains(text, "latency_seconds_sum 5.5")) << text;
  EXPECT_TRUE(contains(text, "latency_seconds_count 3\n")) << text;
}

TEST(MetricsRegistry, UnusedFamiliesStillRenderAZeroSeries) {
  MetricsRegistry metrics;
  metrics.add_counter("c_total", "C.");
  metrics.add_histogram("h_seconds", "H.", {1});
  const std::string text = metrics.render();
  EXPECT_TRUE(contains(text, "c_total 0\n")) << text;
  EXPECT_TRUE(contains(text, "h_seconds_bucket{le=\"+Inf\"} 0\n")) << text;
  EXPECT_TRUE(contains(text, "h_seconds_count 0\n")) << text;
}

TEST(MetricsRegistry, EscapesLabelValues) {
  MetricsRegistry metrics;
  metrics.add_counter("e_total", "E.");
  metrics.increment("e_total", {{"type", "a\"b\\c\nd"}});
  EXPECT_TRUE(contains(metrics.render(), "e_total{type=\"a\\\"b\\\\c\\nd\"} 1\n"))
      << metrics.render();
}

TEST(MetricsRegistry, RefusesUndeclaredWrongKindAndNegativeIncrements) {
  MetricsRegistry metrics;
  metrics.add_counter("c_total", "C.");
  EXPECT_THROW(metrics.increment("missing_total"), Error);
  EXPECT_THROW(metrics.set_gauge("c_total", 1), Error);
  EXPECT_THROW(metrics.increment("c_total", {}, -1), Error);
  EXPECT_THROW(metrics.add_counter("c_total", "again"), Error);
  EXPECT_THROW(metrics.add_histogram("h", "H.", {1, 1}), Error);
}

TEST(MetricsRegistry, ConcurrentIncrementsAreAllCounted) {
  MetricsRegistry metrics;
  metrics.add_counter("c_total", "C.");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) metrics.increment("c_total");
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(metrics.value("c_total"), 4000);
}

}  // namespace
}  // namespace servelab
