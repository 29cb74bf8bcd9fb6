// The replay driver against a scripted server on loopback whose delays are known: every answer
// streams its first piece after 100 ms and then one piece every 20 ms. The server's sleeps make
// the known delays lower bounds that hold exactly; the upper bounds leave room for a loaded
// 2-core machine under AddressSanitizer, and are still far below what a broken driver gives.
// The sending policies themselves are checked exactly on a virtual clock.
#include "replay/replay_driver.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "common/error.h"
#include "replay/scripted_server.h"
#include "replay/virtual_sender_environment.h"

namespace servelab {
namespace {

using testing::kClockSlack;
using testing::most_overlapping;
using testing::ScriptedServer;
using testing::VirtualSenderEnvironment;

/// How late a send, a first piece or an end may come on a loaded machine (thread start-up,
/// scheduling, sanitizer overhead). What each test guards against is well beyond it.
constexpr double kLateness = 0.15;
std::vector<TraceRequest> trace_of(int count, double gap, int64_t tokens) {
  std::vector<TraceRequest> trace;
  for (int i = 0; i < count; ++i) trace.push_back({i * gap, 10, tokens, {}});
  return trace;
}

TEST(ReplayDriver, OpenLoopSendsAtTheTraceTimesAndMeasuresTheKnownDelays) {
  ScriptedServer server;
  ReplayOptions options;
  options.url = server.url();
  options.scrape_interval_seconds = 0.2;
  int64_t progress_calls = 0;
  options.progress = [&](int64_t, int64_t, int64_t, double) { progress_calls += 1; };
  // 6 requests 0.1 s apart, each answered in at least 0.1 + 4 x 0.02 = 0.18 s: a driver that
  // waited for answers would send the last one at 0.9 s or later instead of 0.5 s.
  const ReplayResult result = replay_trace(
      trace_of(6, 0.1, 5), [](size_t) { return std::string("hello"); }, options);
  ASSERT_EQ(result.timings.size(), 6u);
  EXPECT_EQ(server.received(), 6);
  for (size_t i = 0; i < 6; ++i) {
    const RequestTiming& timing = result.timings[i];
    ASSERT_TRUE(timing.ok) << timing.error;
    EXPECT_GE(timing.sent, 0.1 * i - kClockSlack) << "never before its trace time";
    EXPECT_LE(timing.sent, 0.1 * i + kLateness) << "request " << i << " sent late";
    EXPECT_EQ(timing.output_tokens, 5);
    EXPECT_EQ(timing.chunk_times.size(), 5u);
    const RequestLatency latency = latency_of(timing);
    EXPECT_GE(latency.ttft, 0.1 - kClockSlack);
    EXPECT_LE(latency.ttft, 0.1 + kLateness);
    EXPECT_GE(latency.e2e, 0.18 - kClockSlack);
    EXPECT_LE(latency.e2e, 0.18 + kLateness);
    EXPECT_GT(latency.tpot, 0);
    EXPECT_LE(latency.tpot, 0.02 + kLateness / 4);
  }
  const RunSummary summary = summarize(result.timings, Slo{0.5, 0.1});
  EXPECT_EQ(summary.succeeded, 6);
  // Pieces read as they stream, not all at the end (that would make every gap 0): one late read
  // shortens one gap and lengthens the next, so the median of the 24 gaps stays near 20 ms.
  EXPECT_NEAR(summary.itl.median, 0.02, 0.015);
  EXPECT_EQ(summary.met_slo, 6);
  ASSERT_FALSE(result.samples.empty());
  EXPECT_EQ(result.samples.front().running, 3);
  EXPECT_EQ(result.samples.front().kv_usage, 0.25);
  EXPECT_EQ(result.samples.front().swapped, -1) << "absent from this server's metrics";
  EXPECT_GE(progress_calls, 1);
}

TEST(ReplayDriver, OpenLoopHoldsRequestsBackAtMaxInFlight) {
  ScriptedServer server(std::chrono::milliseconds(300), std::chrono::milliseconds(20));
  ReplayOptions options;
  options.url = server.url();
  options.max_in_flight = 2;
  options.scrape_interval_seconds = 0;
  // 5 requests 50 ms apart, answered in at least 0.3 s: without the bound all 5 overlap.
  const ReplayResult result = replay_trace(
      trace_of(5, 0.05, 1), [](size_t) { return std::string("x"); }, options);
  for (const RequestTiming& timing : result.timings) ASSERT_TRUE(timing.ok) << timing.error;
  EXPECT_LE(most_overlapping(result.timings), 2);
  EXPECT_LE(server.most_in_flight(), 2);
  // Request 2 waits for the first answer, and goes as soon as it comes.
  const double first_answer = std::min(result.timings[0].finished, result.timings[1].finished);
  EXPECT_GE(result.timings[2].sent, first_answer - kClockSlack);
  EXPECT_LE(result.timings[2].sent, first_answer + kLateness);
}

TEST(ReplayDriver, ClosedLoopKeepsTheConcurrencyAndAnUnreachableServerIsAnErrorPerRequest) {
  ScriptedServer server;
  ReplayOptions options;
  options.url = server.url();
  options.concurrency = 2;
  options.scrape_interval_seconds = 0;
  // 6 requests of 0.1 + 2 x 0.02 = 0.14 s, two at a time: at least three rounds.
  const ReplayResult result = replay_trace(
      trace_of(6, 0.0, 3), [](size_t) { return std::string("x"); }, options);
  EXPECT_GE(result.duration_seconds, 3 * 0.14 - kClockSlack);
  for (const RequestTiming& timing : result.timings) EXPECT_TRUE(timing.ok);
  EXPECT_LE(most_overlapping(result.timings), 2);
  EXPECT_LE(server.most_in_flight(), 2);

  options.url = "http://127.0.0.1:1";
  const ReplayResult failed = replay_trace(
      trace_of(2, 0.0, 3), [](size_t) { return std::string("x"); }, options);
  for (const RequestTiming& timing : failed.timings) {
    EXPECT_FALSE(timing.ok);
    EXPECT_EQ(timing.error, "connection");
  }
  EXPECT_EQ(summarize(failed.timings, Slo{}).errors[0].second, 2);
}

TEST(ReplayDriver, OpenLoopLaunchesAtTheTraceTimesAndClosedLoopAtTheAnswers) {
  // On a virtual clock: answers take 1 s; the trace sends every 0.25 s.
  const std::vector<double> arrivals = {0, 0.25, 0.5, 0.75};
  VirtualSenderEnvironment open(std::vector<double>(4, 1.0));
  send_open_loop(arrivals, 4096, open);
  EXPECT_EQ(open.launch_order(), (std::vector<size_t>{0, 1, 2, 3}));
  EXPECT_EQ(open.launch_times(), arrivals);
  EXPECT_EQ(open.most_in_flight(), 4);

  VirtualSenderEnvironment closed(std::vector<double>(4, 1.0));
  send_closed_loop(4, 2, closed);
  EXPECT_EQ(closed.launch_order(), (std::vector<size_t>{0, 1, 2, 3}));
  EXPECT_EQ(closed.launch_times(), (std::vector<double>{0, 0, 1, 1}));
  EXPECT_EQ(closed.most_in_flight(), 2);
}

TEST(ReplayDriver, OptionsThatWouldWaitForeverAreAnError) {
  ReplayOptions options;
  options.url = "http://127.0.0.1:1";
  options.scrape_interval_seconds = 0;
  const auto prompt = [](size_t) { return std::string("x"); };
  options.concurrency = -1;
  EXPECT_THROW(replay_trace(trace_of(1, 0.0, 1), prompt, options), Error);
  options.concurrency = 0;
  options.max_in_flight = 0;
  EXPECT_THROW(replay_trace(trace_of(1, 0.0, 1), prompt, options), Error);
}

TEST(ReplayDriver, PrometheusValuesAreReadByExactSeries) {
  const std::string text =
      "# HELP x\nservelab_requests_running 4\nservelab_requests_running_total 9\n"
      "servelab_kv_blocks{pool=\"gpu\",state=\"free\"} 12\n";
  EXPECT_EQ(prometheus_value(text, "servelab_requests_running"), 4);
  EXPECT_EQ(prometheus_value(text, "servelab_kv_blocks{pool=\"gpu\",state=\"free\"}"), 12);
  EXPECT_EQ(prometheus_value(text, "servelab_requests_waiting"), -1);
}

}  // namespace
}  // namespace servelab
