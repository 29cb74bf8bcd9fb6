// The latency metrics of a replay, computed from what the client saw of each request: when it was
// sent, when each piece of text arrived, when the answer ended, and how many tokens it held.
// TTFT, ITL, TPOT and end-to-end latency per request; mean, median, p90 and p99 of each over a
// run; throughput; goodput under SLOs. Pure arithmetic: no sockets, no clock.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace servelab {

/// One request as the replay observed it (times in seconds on one clock).
struct RequestTiming {
  double sent = 0;                  ///< when the request was sent
  std::vector<double> chunk_times;  ///< when each piece of generated text arrived, in order
  double finished = 0;              ///< when the answer ended ([DONE] or the whole body)
  int64_t output_tokens = 0;        ///< completion tokens (usage), for TPOT and throughput
  bool ok = true;                   ///< false: an error answer or a failed connection
  std::string error;                ///< the error's kind when not ok ("429", "connection", ...)
};

/// The per-request metrics.
struct RequestLatency {
  double ttft = 0;  ///< time to first token: first chunk - sent (end - sent with no chunk)
  double e2e = 0;   ///< end-to-end latency: finished - sent
  /// time per output token after the first: (finished - first chunk) / (output tokens - 1); 0
  /// for answers of one token or less
  double tpot = 0;
  std::vector<double> itl;  ///< inter-token latencies: the gaps between consecutive chunks
};

RequestLatency latency_of(const RequestTiming& timing);

struct Percentiles {
  double mean = 0, median = 0, p90 = 0, p99 = 0;
  int64_t count = 0;
};

/// Percentiles by the nearest-rank method (the p-th percentile is the smallest value with at
/// least p% of the values at or below it); all zero for no values.
Percentiles percentiles_of(std::vector<double> values);

/// Service-level objectives for goodput (a request meets them when its TTFT and its TPOT are at
/// most these; 0 leaves one out).
struct Slo {
  double ttft_seconds = 0;
  double tpot_seconds = 0;
};

/// Whether a request with these latencies meets `slo`: its TTFT and its TPOT are each at most the
/// SLO's (a latency exactly at the limit meets it), and an SLO of 0 (or less) is left out. Says
/// nothing of success: the caller passes only requests that succeeded.
bool meets_slo(const RequestLatency& latency, const Slo& slo);

/// Goodput: the requests that succeeded *and* met the SLOs, as a count and as a rate.
struct Goodput {
  int64_t met_slo = 0;    ///< succeeded requests whose latencies meet the SLOs
  double per_second = 0;  ///< met_slo / the run's duration; 0 when the duration is 0
};

/// The goodput of a run of `duration_seconds` (first send to last end): failed requests never
/// count, however fast their (error) answer came.
Goodput goodput_of(const std::vector<RequestTiming>& timings, const Slo& slo,
                   double duration_seconds);

struct RunSummary {
  int64_t requests = 0, succeeded = 0, failed = 0;
  double duration_seconds = 0;         ///< first send to last end
  double request_throughput = 0;       ///< succeeded requests per second
  double output_token_throughput = 0;  ///< output tokens of succeeded requests per second
  double goodput = 0;                  ///< succeeded requests meeting the SLOs, per second
  int64_t met_slo = 0;                 ///< how many those are (goodput_of)
  Percentiles ttft, tpot, itl, e2e;
  std::vector<std::pair<std::string, int64_t>> errors;  ///< by kind, most frequent first
};

RunSummary summarize(const std::vector<RequestTiming>& timings, const Slo& slo);

}  // namespace servelab
