// The replay driver against a scripted server on loopback whose delays are known: every answer
// streams its first piece after 100 ms and then one piece every 20 ms; the measured latencies
// must be those (within the scheduling noise of a shared machine).
#include "replay/replay_driver.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

namespace servelab {
namespace {

using std::chrono::milliseconds;

class ScriptedServer {
 public:
  ScriptedServer() {
    server_.Post("/generate", [this](const httplib::Request& request, httplib::Response& response) {
      const auto body = nlohmann::json::parse(request.body);
      const int64_t tokens = body["generation_config"]["max_new_tokens"];
      received_ += 1;
      response.set_chunked_content_provider(
          "text/event-stream", [tokens](size_t, httplib::DataSink& sink) {
            std::this_thread::sleep_for(milliseconds(100));
            for (int64_t i = 0; i < tokens; ++i) {
              if (i > 0) std::this_thread::sleep_for(milliseconds(20));
              const std::string event =
                  "data: " +
                  nlohmann::json{
                      {"choices", {{{"text", " w"}, {"index", 0}, {"finish_reason", nullptr}}}}}
                      .dump() +
                  "\n\n";
              sink.write(event.data(), event.size());
            }
            const std::string end = "data: " +
                                    nlohmann::json{{"choices", nlohmann::json::array()},
                                                   {"usage", {{"completion_tokens", tokens}}}}
                                        .dump() +
                                    "\n\ndata: [DONE]\n\n";
            sink.write(end.data(), end.size());
            sink.done();
            return true;
          });
    });
    server_.Get("/metrics", [](const httplib::Request&, httplib::Response& response) {
      response.set_content(
          "# TYPE servelab_requests_running gauge\nservelab_requests_running 3\n"
          "servelab_requests_waiting 1\nservelab_kv_cache_usage_ratio 0.25\n",
          "text/plain");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~ScriptedServer() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int64_t received() const { return received_; }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int64_t> received_{0};
};

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
  const ReplayResult result = replay_trace(
      trace_of(6, 0.1, 5), [](size_t) { return std::string("hello"); }, options);
  ASSERT_EQ(result.timings.size(), 6u);
  EXPECT_EQ(server.received(), 6);
  for (size_t i = 0; i < 6; ++i) {
    const RequestTiming& timing = result.timings[i];
    ASSERT_TRUE(timing.ok) << timing.error;
    EXPECT_NEAR(timing.sent, 0.1 * i, 0.05) << "sent at its trace time";
    EXPECT_EQ(timing.output_tokens, 5);
    EXPECT_EQ(timing.chunk_times.size(), 5u);
    const RequestLatency latency = latency_of(timing);
    EXPECT_NEAR(latency.ttft, 0.1, 0.06);
    EXPECT_NEAR(latency.tpot, 0.02, 0.015);
  }
  const RunSummary summary = summarize(result.timings, Slo{0.5, 0.1});
  EXPECT_EQ(summary.succeeded, 6);
  EXPECT_NEAR(summary.itl.median, 0.02, 0.015);
  EXPECT_EQ(summary.met_slo, 6);
  ASSERT_FALSE(result.samples.empty());
  EXPECT_EQ(result.samples.front().running, 3);
  EXPECT_EQ(result.samples.front().kv_usage, 0.25);
  EXPECT_EQ(result.samples.front().swapped, -1) << "absent from this server's metrics";
  EXPECT_GE(progress_calls, 1);
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
  EXPECT_GE(result.duration_seconds, 3 * 0.14 - 0.02);
  for (const RequestTiming& timing : result.timings) EXPECT_TRUE(timing.ok);

  options.url = "http://127.0.0.1:1";
  const ReplayResult failed = replay_trace(
      trace_of(2, 0.0, 3), [](size_t) { return std::string("x"); }, options);
  for (const RequestTiming& timing : failed.timings) {
    EXPECT_FALSE(timing.ok);
    EXPECT_EQ(timing.error, "connection");
  }
  EXPECT_EQ(summarize(failed.timings, Slo{}).errors[0].second, 2);
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
