// A streaming server on loopback whose delays are scripted, for the replay driver's tests and lab
// 09's: every answer streams its first piece a fixed delay after the request arrived, then one
// piece per gap. It records how many requests it received and the most it held at once.
#pragma once

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "replay/latency_metrics.h"

namespace servelab::testing {

class ScriptedServer {
 public:
  /// Each answer to POST /generate holds max_new_tokens pieces: the first `first_piece_delay`
  /// after the request arrived, then one every `piece_gap`; then the usage and [DONE].
  /// GET /metrics answers a fixed Prometheus text (running 3, waiting 1, KV usage 0.25).
  explicit ScriptedServer(
      std::chrono::milliseconds first_piece_delay = std::chrono::milliseconds(100),
      std::chrono::milliseconds piece_gap = std::chrono::milliseconds(20)) {
    // One thread per request in flight, so that the server never queues the tests' requests
    // (httplib's default pool is 8 threads on a small machine).
    server_.new_task_queue = [] { return new httplib::ThreadPool(64); };
    server_.Post("/generate", [this, first_piece_delay, piece_gap](const httplib::Request& request,
                                                                   httplib::Response& response) {
      const auto body = nlohmann::json::parse(request.body);
      const int64_t tokens = body["generation_config"]["max_new_tokens"];
      received_ += 1;
      const int64_t now_in_flight = in_flight_ += 1;
      int64_t most = most_in_flight_;
      while (now_in_flight > most && !most_in_flight_.compare_exchange_weak(most, now_in_flight)) {
      }
      response.set_chunked_content_provider(
          "text/event-stream",
          [this, tokens, first_piece_delay, piece_gap](size_t, httplib::DataSink& sink) {
            std::this_thread::sleep_for(first_piece_delay);
            for (int64_t i = 0; i < tokens; ++i) {
              if (i > 0) std::this_thread::sleep_for(piece_gap);
              const std::string event =
                  "data: " +
                  nlohmann::json{
                      {"choices", {{{"text", " w"}, {"index", 0}, {"finish_reason", nullptr}}}}}
                      .dump() +
                  "\n\n";
              sink.write(event.data(), event.size());
            }
            // Out of flight before the client can see the end: then the client's count of its
            // requests in flight is never below this one.
            in_flight_ -= 1;
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
    // The socket listens from bind on, so requests sent before the thread runs wait in its queue.
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~ScriptedServer() {
    server_.stop();
    thread_.join();
  }
  ScriptedServer(const ScriptedServer&) = delete;
  ScriptedServer& operator=(const ScriptedServer&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int64_t received() const { return received_; }
  /// The most requests whose answer had not ended, at any one time.
  int64_t most_in_flight() const { return most_in_flight_; }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int64_t> received_{0};
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> most_in_flight_{0};
};

/// Rounding between two reads of steady_clock, for bounds on recorded times.
constexpr double kClockSlack = 1e-3;

/// The most requests that the client held at once: the largest number of [sent, finished]
/// intervals that share an instant (the driver counts a request in flight over a longer span
/// than this one, so this can only undercount the driver's own count).
inline int64_t most_overlapping(const std::vector<RequestTiming>& timings) {
  int64_t most = 0;
  for (const RequestTiming& at : timings) {
    int64_t count = 0;
    for (const RequestTiming& other : timings)
      count += other.sent <= at.sent && at.sent <= other.finished ? 1 : 0;
    most = std::max(most, count);
  }
  return most;
}

}  // namespace servelab::testing
