// The replay driver: sends a trace's requests to a server (or the balancer) at the trace's times
// (open loop) or with a fixed number in flight (closed loop), streaming, and records what the
// client sees of each: when it was sent, when each piece of text arrived, when it ended, its token
// count and its outcome. Meanwhile it scrapes the server's /metrics once a second. Prompts come
// from the caller (prompt synthesis needs the model's tokenizer); outputs are enforced with
// min_new_tokens = max_new_tokens and ignore_eos. The sending policies (open and closed loop) see
// only a SenderEnvironment, never a socket or a clock of their own, so that tests run them on a
// virtual clock.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "replay/latency_metrics.h"
#include "replay/trace.h"

namespace servelab {

struct ReplayOptions {
  std::string url;  ///< "http://host:port" of a server or the balancer
  std::string api_key;
  /// Closed loop with this many requests in flight when > 0; open loop (the trace's times) when 0.
  int64_t concurrency = 0;
  /// Open loop: the most requests in flight before new ones wait (a client's own limit).
  int64_t max_in_flight = 4096;
  double scrape_interval_seconds = 1.0;  ///< /metrics; 0 turns scraping off
  /// Called about twice a second with (sent, finished, output tokens so far, elapsed seconds).
  std::function<void(int64_t, int64_t, int64_t, double)> progress;
};

/// One /metrics scrape.
struct ServerSample {
  double time = 0;  ///< seconds since the replay started
  double running = 0, waiting = 0, swapped = 0, kv_usage = 0;
};

struct ReplayResult {
  std::vector<RequestTiming> timings;  ///< in trace order; times in seconds since the start
  std::vector<ServerSample> samples;
  double duration_seconds = 0;
};

/// What a sender sees of the world: a clock that starts with the replay, the requests in flight,
/// and a way to launch one. replay_trace's is real (steady_clock, one thread per request); tests
/// script one on a virtual clock, so that the sending policy is graded exactly, without sockets.
class SenderEnvironment {
 public:
  virtual ~SenderEnvironment() = default;
  /// Seconds since the replay started.
  virtual double now() = 0;
  /// Returns at `seconds` since the start; at once when that time is past.
  virtual void sleep_until(double seconds) = 0;
  /// Returns once fewer than `limit` requests are in flight (at once if they already are).
  virtual void wait_until_in_flight_below(int64_t limit) = 0;
  /// Starts request `index` and returns at once: its answer arrives later, on its own.
  virtual void launch(size_t index) = 0;
};

/// Open loop: launches request i at `arrival_seconds[i]` after the start (the trace's time, not
/// a gap from the previous send), in order, whatever is still in flight, so that a slow server
/// meets the traffic it would meet in production. The one wait for answers is the client's own
/// bound: a request is launched only while fewer than `max_in_flight` (>= 1) are in flight; one
/// held back by it goes as soon as a slot frees, and the next ones keep their trace times.
void send_open_loop(const std::vector<double>& arrival_seconds, int64_t max_in_flight,
                    SenderEnvironment& environment);

/// Closed loop: launches `count` requests in order, each as soon as fewer than `concurrency`
/// (>= 1) are in flight, ignoring any times: the load follows the server's speed.
void send_closed_loop(size_t count, int64_t concurrency, SenderEnvironment& environment);

/// `prompt_of(i)` gives request i's prompt text. Throws servelab::Error for a bad URL, a negative
/// concurrency, or (open loop) a max_in_flight below 1.
ReplayResult replay_trace(const std::vector<TraceRequest>& trace,
                          const std::function<std::string(size_t)>& prompt_of,
                          const ReplayOptions& options);

/// The value of a Prometheus series in `text` ("name" or "name{labels}"), or -1 when absent.
double prometheus_value(const std::string& text, const std::string& series);

}  // namespace servelab
