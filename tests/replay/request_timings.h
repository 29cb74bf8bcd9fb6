// Scripted RequestTimings for the tests of the latency metrics (the replay's unit tests and
// lab 09's goodput tests): a request as the replay would have recorded it, with made-up times.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "replay/latency_metrics.h"

namespace servelab::testing {

/// A request as the replay saw it: sent, its pieces of text arriving, its end, its token count.
inline RequestTiming streamed(double sent, std::vector<double> chunks, double finished,
                              int64_t tokens) {
  RequestTiming timing;
  timing.sent = sent;
  timing.chunk_times = std::move(chunks);
  timing.finished = finished;
  timing.output_tokens = tokens;
  return timing;
}

}  // namespace servelab::testing
