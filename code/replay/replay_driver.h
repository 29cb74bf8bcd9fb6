// The replay driver: sends a trace's requests to a server (or the balancer) at the trace's times
// (open loop) or with a fixed number in flight (closed loop), streaming, and records what the
// client sees of each: when it was sent, when each piece of text arrived, when it ended, its token
// count and its outcome. Meanwhile it scrapes the server's /metrics once a second. Prompts come
// from the caller (prompt synthesis needs the model's tokenizer); outputs are enforced with
// min_new_tokens = max_new_tokens and ignore_eos.
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

/// `prompt_of(i)` gives request i's prompt text. Throws servelab::Error for a bad URL.
ReplayResult replay_trace(const std::vector<TraceRequest>& trace,
                          const std::function<std::string(size_t)>& prompt_of,
                          const ReplayOptions& options);

/// The value of a Prometheus series in `text` ("name" or "name{labels}"), or -1 when absent.
double prometheus_value(const std::string& text, const std::string& series);

}  // namespace servelab
