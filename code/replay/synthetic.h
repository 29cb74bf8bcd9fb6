// Synthetic traces and the transforms every trace can go through before a replay: arrivals from a
// Poisson or gamma process at a given rate and burstiness, lengths from simple distributions (or
// resampled from a real trace), and a time window, a speed-up or target rate, a request limit and
// the mapping of lengths onto a model's context. Pure functions of their inputs and a seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "replay/trace.h"

namespace servelab {

/// A distribution of token counts.
struct LengthDistribution {
  enum class Kind {
    kFixed,              ///< always `value`
    kUniform,            ///< uniform over [minimum, maximum]
    kExponential,        ///< exponential with mean `value`, rounded, at least `minimum`
    kCappedExponential,  ///< the same, capped at `maximum`
    kResample,           ///< one of `samples`, uniformly (lengths resampled from a real trace)
  };
  Kind kind = Kind::kFixed;
  double value = 128;
  int64_t minimum = 1, maximum = 1024;
  std::vector<int64_t> samples;
};

/// Parses "fixed:N", "uniform:A:B", "exp:MEAN", "capped-exp:MEAN:CAP"; throws servelab::Error
/// naming the text otherwise. (Resampling is set up from a trace, not parsed.)
LengthDistribution parse_length_distribution(const std::string& text);

struct SyntheticTraceOptions {
  int64_t requests = 100;
  double rate = 1.0;  ///< mean requests per second
  /// The gamma shape of the inter-arrival times: 1 is a Poisson process, below 1 is burstier
  /// (the coefficient of variation of the gaps is 1 / sqrt(burstiness)), above 1 is more regular.
  double burstiness = 1.0;
  LengthDistribution prompt, output;
  uint64_t seed = 1;
};

/// Arrival gaps ~ Gamma(shape = burstiness, scale = 1 / (rate * burstiness)), so their mean is
/// 1 / rate; the first request arrives at 0. Throws servelab::Error for a rate or burstiness <= 0.
std::vector<TraceRequest> synthesize_trace(const SyntheticTraceOptions& options);

/// The built-in trace of `servelab compare`: shaped like the Azure conversation trace (short
/// prompts and answers, bursty arrivals), scaled to a small model's context.
SyntheticTraceOptions azure_conversation_like(int64_t requests, double rate, int64_t context);

/// Keeps the requests arriving in [start, end) seconds, shifted to start at 0.
std::vector<TraceRequest> time_window(const std::vector<TraceRequest>& trace, double start,
                                      double end);
/// Divides every arrival time by `factor` (> 0): a factor of 2 replays twice as fast.
std::vector<TraceRequest> speed_up(const std::vector<TraceRequest>& trace, double factor);
/// The speed-up that gives `rate` requests per second on average over the trace.
std::vector<TraceRequest> at_rate(const std::vector<TraceRequest>& trace, double rate);
/// The first `count` requests (all when count is 0 or more than there are).
std::vector<TraceRequest> first_requests(const std::vector<TraceRequest>& trace, int64_t count);

/// Maps lengths onto a model whose context is `context` tokens: both lengths are multiplied by
/// `scale` (e.g. 512 / 8192 for a trace of an 8K model replayed on a 512-token one), rounded, at
/// least 1 prompt token and 1 output token, then the output is clipped so that prompt + output
/// fits the context, and the prompt so that at least one output token does.
std::vector<TraceRequest> fit_to_context(const std::vector<TraceRequest>& trace, double scale,
                                         int64_t context);

}  // namespace servelab
