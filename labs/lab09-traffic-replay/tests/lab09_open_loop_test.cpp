// Lab 09 (traffic replay), part lab09-open-loop: send_open_loop(), the sender that replays a
// trace at its times whatever the server does, up to the client's own bound.
//
// First on a virtual clock (tests/replay/virtual_sender_environment.h): time moves only when the
// sender sleeps or waits, each request is answered a scripted time after its launch, and every
// launch time is exact. Then through replay_trace against a scripted server on loopback
// (tests/replay/scripted_server.h) that holds every answer 300 ms while the trace sends every
// 50 ms. Real time on a loaded machine is noisy, so those tests allow a request to go up to
// kLateness late: far less than the 300 ms that a sender waiting for answers loses per request.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "replay/replay_driver.h"
#include "replay/scripted_server.h"
#include "replay/virtual_sender_environment.h"

namespace servelab {
namespace {

using testing::kClockSlack;
using testing::most_overlapping;
using testing::ScriptedServer;
using testing::VirtualSenderEnvironment;

std::vector<size_t> zero_to(size_t count) {
  std::vector<size_t> indexes;
  for (size_t i = 0; i < count; ++i) indexes.push_back(i);
  return indexes;
}

// ---- on a virtual clock: exact -----------------------------------------------------------------

TEST(Lab09OpenLoop, EachRequestGoesAtItsTraceTimeWhileTheAnswersAreSlow) {
  // One request every 1/16 s; each answer takes 0.5 s.
  std::vector<double> arrivals;
  for (int i = 0; i < 12; ++i) arrivals.push_back(i * 0.0625);
  VirtualSenderEnvironment environment(std::vector<double>(12, 0.5));
  send_open_loop(arrivals, 4096, environment);
  ASSERT_EQ(environment.launch_order(), zero_to(12)) << "each request once, in trace order";
  EXPECT_EQ(environment.launch_times(), arrivals) << "at the trace's times, not after answers";
  EXPECT_EQ(environment.most_in_flight(), 8) << "0.5 s of answers overlap 8 sends";
}

TEST(Lab09OpenLoop, TheTimesAreSinceTheStartNotGapsAndMayRepeat) {
  // The first request is not at 0, and two share a time.
  const std::vector<double> arrivals = {0.25, 0.25, 0.5, 2.0};
  VirtualSenderEnvironment environment(std::vector<double>(4, 0.125));
  send_open_loop(arrivals, 4096, environment);
  ASSERT_EQ(environment.launch_order(), zero_to(4));
  EXPECT_EQ(environment.launch_times(), arrivals);
}

TEST(Lab09OpenLoop, MaxInFlightHoldsARequestBackUntilAnAnswerComes) {
  // One request every 1/8 s, answers of 1 s, at most 2 in flight.
  const std::vector<double> arrivals = {0, 0.125, 0.25, 0.375, 0.5, 0.625};
  VirtualSenderEnvironment environment(std::vector<double>(6, 1.0));
  send_open_loop(arrivals, 2, environment);
  ASSERT_EQ(environment.launch_order(), zero_to(6));
  EXPECT_EQ(environment.launch_times(), (std::vector<double>{0, 0.125, 1.0, 1.125, 2.0, 2.125}))
      << "request 2 goes when request 0 is answered (1.0), request 3 when request 1 is (1.125)";
  EXPECT_EQ(environment.most_in_flight(), 2);
}

TEST(Lab09OpenLoop, ARequestHeldBackDoesNotPushTheLaterOnesBack) {
  // One slot. Request 0 takes 1 s, the others 1/16 s. Requests 1 to 3 are due while request 0
  // runs: they go one after the other as the slot frees. Request 4 is due at 1.5, after all of
  // them: it goes at 1.5, not at 1.125 + (1.5 - 0.375) as it would if the sender slept the
  // trace's gaps from its own late sends.
  const std::vector<double> arrivals = {0, 0.125, 0.25, 0.375, 1.5};
  VirtualSenderEnvironment environment({1.0, 0.0625, 0.0625, 0.0625, 0.0625});
  send_open_loop(arrivals, 1, environment);
  ASSERT_EQ(environment.launch_order(), zero_to(5));
  EXPECT_EQ(environment.launch_times(), (std::vector<double>{0, 1.0, 1.0625, 1.125, 1.5}));
  EXPECT_EQ(environment.most_in_flight(), 1);
}

// ---- through replay_trace, against a scripted server
// ---------------------------------------------

/// How late a request may be sent on a loaded 2-core machine under AddressSanitizer (a thread
/// to start, a scheduler to get round to it).
constexpr double kLateness = 0.12;
std::vector<TraceRequest> every(double gap, int count) {
  std::vector<TraceRequest> trace;
  for (int i = 0; i < count; ++i) trace.push_back({i * gap, 10, 1, {}});
  return trace;
}

TEST(Lab09OpenLoop, AgainstASlowServerTheSendsDoNotWaitForAnswers) {
  ScriptedServer server(std::chrono::milliseconds(300), std::chrono::milliseconds(20));
  ReplayOptions options;
  options.url = server.url();
  options.scrape_interval_seconds = 0;
  // 8 requests 50 ms apart; each answer takes at least 300 ms. Waiting for answers would send
  // request 1 at 0.3 s rather than 0.05 s, and request 7 at 2.1 s rather than 0.35 s.
  const std::vector<TraceRequest> trace = every(0.05, 8);
  const ReplayResult result = replay_trace(
      trace, [](size_t) { return std::string("hello"); }, options);
  ASSERT_EQ(result.timings.size(), trace.size());
  EXPECT_EQ(server.received(), 8);
  for (size_t i = 0; i < trace.size(); ++i) {
    const RequestTiming& timing = result.timings[i];
    EXPECT_TRUE(timing.ok) << "request " << i << ": " << timing.error;
    EXPECT_GE(timing.sent, trace[i].arrival_seconds - kClockSlack)
        << "request " << i << " was sent before its trace time";
    EXPECT_LE(timing.sent, trace[i].arrival_seconds + kLateness)
        << "request " << i << " was sent " << timing.sent - trace[i].arrival_seconds
        << " s after its trace time";
    EXPECT_GE(timing.finished - timing.sent, 0.3 - kClockSlack) << "the server's delay";
  }
  EXPECT_LE(result.duration_seconds, 0.35 + 0.3 + 0.5) << "the answers overlapped";
}

TEST(Lab09OpenLoop, AgainstASlowServerMaxInFlightIsHonoured) {
  ScriptedServer server(std::chrono::milliseconds(300), std::chrono::milliseconds(20));
  ReplayOptions options;
  options.url = server.url();
  options.max_in_flight = 2;
  options.scrape_interval_seconds = 0;
  // 5 requests 50 ms apart, answered in at least 300 ms: without the bound all 5 overlap.
  const ReplayResult result = replay_trace(
      every(0.05, 5), [](size_t) { return std::string("hello"); }, options);
  for (const RequestTiming& timing : result.timings) ASSERT_TRUE(timing.ok) << timing.error;
  EXPECT_LE(most_overlapping(result.timings), 2) << "seen by the client";
  EXPECT_LE(server.most_in_flight(), 2) << "seen by the server";
  // Request 2, due at 0.1 s, waits for the first answer and goes as soon as it comes.
  const double first_answer = std::min(result.timings[0].finished, result.timings[1].finished);
  EXPECT_GE(result.timings[2].sent, first_answer - kClockSlack);
  EXPECT_LE(result.timings[2].sent, first_answer + kLateness);
}

}  // namespace
}  // namespace servelab
