// Lab 09 (traffic replay), part lab09-goodput: which requests meet the SLOs (meets_slo), and
// goodput, the rate of those that succeeded and met them (goodput_of, used by summarize).
//
// Every timing is scripted, in seconds that are exact in binary (0.25, 0.5, 0.0625, ...), so that
// a latency exactly at its SLO is exactly at it and every expected value is exact.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "replay/latency_metrics.h"
#include "replay/request_timings.h"

namespace servelab {
namespace {

using testing::streamed;

RequestTiming failed(double sent, double finished, const std::string& error) {
  RequestTiming timing;
  timing.sent = sent;
  timing.finished = finished;
  timing.ok = false;
  timing.error = error;
  return timing;
}

RequestLatency latency_with(double ttft, double tpot) {
  RequestLatency latency;
  latency.ttft = ttft;
  latency.tpot = tpot;
  latency.e2e = ttft + 4 * tpot;
  return latency;
}

// ---- which requests meet the SLOs ---------------------------------------------------------------

TEST(Lab09Goodput, ALatencyExactlyAtItsSloMeetsIt) {
  const Slo slo{0.5, 0.25};
  EXPECT_TRUE(meets_slo(latency_with(0.5, 0.25), slo)) << "at most the SLO, not below it";
  EXPECT_TRUE(meets_slo(latency_with(0.125, 0.0625), slo));
  EXPECT_FALSE(meets_slo(latency_with(std::nextafter(0.5, 1.0), 0.25), slo)) << "TTFT just over";
  EXPECT_FALSE(meets_slo(latency_with(0.5, std::nextafter(0.25, 1.0)), slo)) << "TPOT just over";
  EXPECT_FALSE(meets_slo(latency_with(0.75, 0.5), slo));
}

TEST(Lab09Goodput, AnSloOfZeroIsLeftOut) {
  EXPECT_TRUE(meets_slo(latency_with(100, 0.25), Slo{0, 0.25})) << "no TTFT SLO";
  EXPECT_FALSE(meets_slo(latency_with(100, 0.5), Slo{0, 0.25})) << "the TPOT SLO still holds";
  EXPECT_TRUE(meets_slo(latency_with(0.5, 100), Slo{0.5, 0})) << "no TPOT SLO";
  EXPECT_FALSE(meets_slo(latency_with(0.75, 100), Slo{0.5, 0})) << "the TTFT SLO still holds";
  EXPECT_TRUE(meets_slo(latency_with(100, 100), Slo{})) << "no SLO at all: every request meets it";
}

TEST(Lab09Goodput, TheEdgesHoldOnMeasuredTimings) {
  // Sent at 0.25, pieces at 0.75, 1.0 and 1.25, 3 tokens: TTFT 0.5, TPOT (1.25 - 0.75) / 2 = 0.25.
  const RequestTiming at_edge = streamed(0.25, {0.75, 1.0, 1.25}, 1.25, 3);
  EXPECT_EQ(goodput_of({at_edge}, Slo{0.5, 0.25}, 1).met_slo, 1);
  EXPECT_EQ(goodput_of({at_edge}, Slo{0.375, 0.25}, 1).met_slo, 0) << "TTFT 0.5 > 0.375";
  EXPECT_EQ(goodput_of({at_edge}, Slo{0.5, 0.1875}, 1).met_slo, 0)
      << "TPOT 0.25 > 0.1875: 3 tokens are 2 gaps after the first";
}

TEST(Lab09Goodput, FailedRequestsNeverCountHoweverFastTheirAnswer) {
  // A 429 answered at once: its "TTFT" (its end) is 0.0625 s.
  const RequestTiming refused = failed(0, 0.0625, "429");
  // A stream that broke after two quick pieces: TTFT 0.125, TPOT 0.125, but no whole answer.
  RequestTiming broken = streamed(0, {0.125, 0.25}, 0.25, 2);
  broken.ok = false;
  broken.error = "stream_error";
  const RequestTiming good = streamed(0, {0.25, 0.5}, 0.5, 2);
  const Goodput goodput = goodput_of({refused, broken, good}, Slo{0.5, 0.25}, 0.5);
  EXPECT_EQ(goodput.met_slo, 1);
  EXPECT_DOUBLE_EQ(goodput.per_second, 2.0) << "1 request in 0.5 s";
  EXPECT_EQ(goodput_of({refused, broken}, Slo{}, 0.5).met_slo, 0) << "not even without SLOs";
}

TEST(Lab09Goodput, AOneTokenAnswerIsJudgedByItsTtftAlone) {
  // One token: none comes after the first, so it has no TPOT, however long the stream took to
  // close after it.
  const RequestTiming one_token = streamed(0, {0.25}, 4.0, 1);
  EXPECT_EQ(goodput_of({one_token}, Slo{0.5, 0.0625}, 4).met_slo, 1);
  EXPECT_EQ(goodput_of({one_token}, Slo{0.125, 0.0625}, 4).met_slo, 0) << "TTFT 0.25 > 0.125";
  // An answer that came whole (no piece streamed): its first token came with its end.
  const RequestTiming whole = streamed(0, {}, 0.75, 1);
  EXPECT_EQ(goodput_of({whole}, Slo{1.0, 0.0625}, 1).met_slo, 1);
  EXPECT_EQ(goodput_of({whole}, Slo{0.5, 0}, 1).met_slo, 0) << "TTFT 0.75 > 0.5";
}

// ---- the goodput rate ---------------------------------------------------------------------------

TEST(Lab09Goodput, GoodputIsTheRequestsThatMetTheSlosPerSecondOfTheWholeRun) {
  const std::vector<RequestTiming> run = {
      streamed(0, {0.25, 0.5}, 0.5, 2),           // TTFT 0.25, TPOT 0.25: met
      streamed(0.5, {0.75, 1.0, 1.25}, 1.25, 3),  // TTFT 0.25, TPOT 0.25: met
      streamed(1.0, {2.0, 2.25}, 2.25, 2),        // TTFT 1.0: missed
      streamed(1.5, {1.75, 2.75}, 2.75, 2),       // TPOT 1.0: missed
      failed(2.0, 4.0, "connection"),             // failed; the run still lasts until 4.0
  };
  const Slo slo{0.5, 0.25};
  const RunSummary summary = summarize(run, slo);
  EXPECT_DOUBLE_EQ(summary.duration_seconds, 4.0);
  EXPECT_EQ(summary.met_slo, 2);
  EXPECT_DOUBLE_EQ(summary.goodput, 0.5) << "2 requests over the run's 4 s";
  EXPECT_DOUBLE_EQ(summary.request_throughput, 1.0) << "throughput counts all 4 answers";

  const Goodput direct = goodput_of(run, slo, 4.0);
  EXPECT_EQ(direct.met_slo, 2);
  EXPECT_DOUBLE_EQ(direct.per_second, 0.5);
  // Without SLOs, goodput is the throughput of succeeded requests.
  EXPECT_DOUBLE_EQ(summarize(run, Slo{}).goodput, summary.request_throughput);
}

TEST(Lab09Goodput, ARunOfNoDurationHasNoRate) {
  const std::vector<RequestTiming> instant = {streamed(1.0, {1.0}, 1.0, 1)};
  const Goodput goodput = goodput_of(instant, Slo{0.5, 0.25}, 0);
  EXPECT_EQ(goodput.met_slo, 1);
  EXPECT_EQ(goodput.per_second, 0) << "0, not a division by zero";
  const Goodput none = goodput_of({}, Slo{0.5, 0.25}, 0);
  EXPECT_EQ(none.met_slo, 0);
  EXPECT_EQ(none.per_second, 0);
}

}  // namespace
}  // namespace servelab
