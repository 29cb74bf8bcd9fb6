// The latency metrics of a replay (see latency_metrics.h).
#include "replay/latency_metrics.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace servelab {

RequestLatency latency_of(const RequestTiming& timing) {
  RequestLatency latency;
  latency.e2e = timing.finished - timing.sent;
  latency.ttft =
      timing.chunk_times.empty() ? latency.e2e : timing.chunk_times.front() - timing.sent;
  for (size_t i = 1; i < timing.chunk_times.size(); ++i)
    latency.itl.push_back(timing.chunk_times[i] - timing.chunk_times[i - 1]);
  if (timing.output_tokens > 1 && !timing.chunk_times.empty())
    latency.tpot = (timing.finished - timing.chunk_times.front()) /
                   static_cast<double>(timing.output_tokens - 1);
  return latency;
}

Percentiles percentiles_of(std::vector<double> values) {
  Percentiles result;
  result.count = static_cast<int64_t>(values.size());
  if (values.empty()) return result;
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (double value : values) sum += value;
  result.mean = sum / static_cast<double>(values.size());
  auto rank = [&](double p) {
    const size_t index =
        static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
    return values[std::min(values.size(), std::max<size_t>(index, 1)) - 1];
  };
  result.median = rank(50);
  result.p90 = rank(90);
  result.p99 = rank(99);
  return result;
}

bool meets_slo(const RequestLatency& latency, const Slo& slo) {
  // BEGIN LAB(lab09-goodput)
  // An SLO of 0 is left out. TPOT is 0 for an answer of one token (latency_of): no token came
  // after the first, so only its TTFT can miss.
  const bool ttft_met = slo.ttft_seconds <= 0 || latency.ttft <= slo.ttft_seconds;
  const bool tpot_met = slo.tpot_seconds <= 0 || latency.tpot <= slo.tpot_seconds;
  return ttft_met && tpot_met;
  // END LAB
}

Goodput goodput_of(const std::vector<RequestTiming>& timings, const Slo& slo,
                   double duration_seconds) {
  // BEGIN LAB(lab09-goodput)
  Goodput goodput;
  for (const RequestTiming& timing : timings) {
    // A failed request is not good output, even when its error came back within the SLOs.
    if (timing.ok && meets_slo(latency_of(timing), slo)) goodput.met_slo += 1;
  }
  if (duration_seconds > 0)
    goodput.per_second = static_cast<double>(goodput.met_slo) / duration_seconds;
  return goodput;
  // END LAB
}

RunSummary summarize(const std::vector<RequestTiming>& timings, const Slo& slo) {
  RunSummary summary;
  summary.requests = static_cast<int64_t>(timings.size());
  if (timings.empty()) return summary;
  double start = timings.front().sent, end = timings.front().finished;
  std::vector<double> ttft, tpot, itl, e2e;
  int64_t tokens = 0;
  std::map<std::string, int64_t> errors;
  for (const RequestTiming& timing : timings) {
    start = std::min(start, timing.sent);
    end = std::max(end, timing.finished);
    if (!timing.ok) {
      summary.failed += 1;
      errors[timing.error.empty() ? "unknown" : timing.error] += 1;
      continue;
    }
    summary.succeeded += 1;
    const RequestLatency latency = latency_of(timing);
    ttft.push_back(latency.ttft);
    e2e.push_back(latency.e2e);
    if (timing.output_tokens > 1) tpot.push_back(latency.tpot);
    itl.insert(itl.end(), latency.itl.begin(), latency.itl.end());
    tokens += timing.output_tokens;
  }
  summary.duration_seconds = end - start;
  if (summary.duration_seconds > 0) {
    summary.request_throughput = summary.succeeded / summary.duration_seconds;
    summary.output_token_throughput = static_cast<double>(tokens) / summary.duration_seconds;
  }
  const Goodput goodput = goodput_of(timings, slo, summary.duration_seconds);
  summary.met_slo = goodput.met_slo;
  summary.goodput = goodput.per_second;
  summary.ttft = percentiles_of(ttft);
  summary.tpot = percentiles_of(tpot);
  summary.itl = percentiles_of(itl);
  summary.e2e = percentiles_of(e2e);
  summary.errors.assign(errors.begin(), errors.end());
  std::stable_sort(summary.errors.begin(), summary.errors.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return summary;
}

}  // namespace servelab
