// Synthetic traces and trace transforms (see synthetic.h).
#include "replay/synthetic.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include "common/error.h"

namespace servelab {
namespace {

int64_t draw(const LengthDistribution& d, std::mt19937_64& random) {
  using Kind = LengthDistribution::Kind;
  switch (d.kind) {
    case Kind::kFixed:
      return std::max<int64_t>(1, std::llround(d.value));
    case Kind::kUniform:
      return std::uniform_int_distribution<int64_t>(d.minimum, d.maximum)(random);
    case Kind::kExponential:
    case Kind::kCappedExponential: {
      int64_t value =
          std::max(d.minimum, static_cast<int64_t>(std::llround(
                                  std::exponential_distribution<double>(1.0 / d.value)(random))));
      if (d.kind == Kind::kCappedExponential) value = std::min(value, d.maximum);
      return value;
    }
    case Kind::kResample:
      if (d.samples.empty()) fail("a resampled length distribution needs samples");
      return d.samples[std::uniform_int_distribution<size_t>(0, d.samples.size() - 1)(random)];
  }
  return 1;
}

}  // namespace

LengthDistribution parse_length_distribution(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ':')) parts.push_back(part);
  auto number = [&](size_t i) {
    try {
      size_t used = 0;
      const double value = std::stod(parts.at(i), &used);
      if (used != parts[i].size() || !(value > 0)) throw std::invalid_argument("bad");
      return value;
    } catch (const std::exception&) {
      fail("length distribution '", text,
           "': expected fixed:N, uniform:A:B, exp:MEAN or capped-exp:MEAN:CAP with numbers > 0");
    }
  };
  LengthDistribution d;
  using Kind = LengthDistribution::Kind;
  if (parts.size() == 2 && parts[0] == "fixed") {
    d.kind = Kind::kFixed;
    d.value = number(1);
  } else if (parts.size() == 3 && parts[0] == "uniform") {
    d.kind = Kind::kUniform;
    d.minimum = std::llround(number(1));
    d.maximum = std::llround(number(2));
    if (d.minimum > d.maximum) fail("length distribution '", text, "': A must be <= B");
  } else if (parts.size() == 2 && parts[0] == "exp") {
    d.kind = Kind::kExponential;
    d.value = number(1);
  } else if (parts.size() == 3 && parts[0] == "capped-exp") {
    d.kind = Kind::kCappedExponential;
    d.value = number(1);
    d.maximum = std::llround(number(2));
  } else {
    fail("length distribution '", text,
         "': expected fixed:N, uniform:A:B, exp:MEAN or capped-exp:MEAN:CAP with numbers > 0");
  }
  return d;
}

std::vector<TraceRequest> synthesize_trace(const SyntheticTraceOptions& o) {
  if (!(o.rate > 0)) fail("a synthetic trace needs a rate > 0 requests per second, got ", o.rate);
  if (!(o.burstiness > 0)) fail("a synthetic trace needs a burstiness > 0, got ", o.burstiness);
  if (o.requests < 0) fail("a synthetic trace needs a request count >= 0");
  std::mt19937_64 random(o.seed);
  std::gamma_distribution<double> gap(o.burstiness, 1.0 / (o.rate * o.burstiness));
  std::vector<TraceRequest> trace;
  double now = 0;
  for (int64_t i = 0; i < o.requests; ++i) {
    if (i > 0) now += gap(random);
    TraceRequest request;
    request.arrival_seconds = now;
    request.prompt_tokens = std::max<int64_t>(1, draw(o.prompt, random));
    request.output_tokens = std::max<int64_t>(1, draw(o.output, random));
    trace.push_back(request);
  }
  return trace;
}

SyntheticTraceOptions azure_conversation_like(int64_t requests, double rate, int64_t context) {
  // The Azure LLM inference trace 2023, conversation (19,366 requests over 58 minutes): prompts
  // of 1,155 tokens on average (median 1,020), answers of 211 (median 129, close to exponential),
  // 5.5 requests/s with gaps whose coefficient of variation is 1.09 (gamma shape 0.84). For a
  // context under 2,048 tokens the lengths are scaled by context / 2048, so that the trace's
  // typical request keeps its share of the context; from 2,048 on they are the trace's.
  const double scale = std::min(1.0, static_cast<double>(context) / 2048.0);
  SyntheticTraceOptions o;
  o.requests = requests;
  o.rate = rate;
  o.burstiness = 0.84;
  const double prompt_mean = 1155 * scale;
  o.prompt.kind = LengthDistribution::Kind::kUniform;
  o.prompt.minimum = std::max<int64_t>(1, std::llround(prompt_mean * 0.25));
  o.prompt.maximum = std::max<int64_t>(o.prompt.minimum, std::llround(prompt_mean * 1.75));
  o.output.kind = LengthDistribution::Kind::kCappedExponential;
  o.output.value = 211 * scale;
  o.output.minimum = 1;
  o.output.maximum = std::max<int64_t>(1, context / 2);
  return o;
}

std::vector<TraceRequest> time_window(const std::vector<TraceRequest>& trace, double start,
                                      double end) {
  if (!(end > start)) fail("a time window needs end > start, got [", start, ", ", end, ")");
  std::vector<TraceRequest> kept;
  for (const TraceRequest& request : trace) {
    if (request.arrival_seconds < start || request.arrival_seconds >= end) continue;
    kept.push_back(request);
  }
  const double first = kept.empty() ? 0 : kept.front().arrival_seconds;
  for (TraceRequest& request : kept) request.arrival_seconds -= first;
  return kept;
}

std::vector<TraceRequest> speed_up(const std::vector<TraceRequest>& trace, double factor) {
  if (!(factor > 0)) fail("a speed-up factor must be > 0, got ", factor);
  std::vector<TraceRequest> result = trace;
  for (TraceRequest& request : result) request.arrival_seconds /= factor;
  return result;
}

std::vector<TraceRequest> at_rate(const std::vector<TraceRequest>& trace, double rate) {
  if (!(rate > 0)) fail("a target rate must be > 0 requests per second, got ", rate);
  if (trace.size() < 2 || trace.back().arrival_seconds <= 0) return trace;
  const double current = static_cast<double>(trace.size() - 1) / trace.back().arrival_seconds;
  return speed_up(trace, rate / current);
}

std::vector<TraceRequest> first_requests(const std::vector<TraceRequest>& trace, int64_t count) {
  if (count <= 0 || count >= static_cast<int64_t>(trace.size())) return trace;
  return std::vector<TraceRequest>(trace.begin(), trace.begin() + count);
}

std::vector<TraceRequest> fit_to_context(const std::vector<TraceRequest>& trace, double scale,
                                         int64_t context) {
  if (!(scale > 0)) fail("a length scale must be > 0, got ", scale);
  if (context < 2) fail("a context of ", context, " tokens cannot hold a prompt and an answer");
  std::vector<TraceRequest> result = trace;
  for (TraceRequest& request : result) {
    int64_t prompt = std::max<int64_t>(1, std::llround(request.prompt_tokens * scale));
    int64_t output = std::max<int64_t>(1, std::llround(request.output_tokens * scale));
    prompt = std::min(prompt, context - 1);
    output = std::min(output, context - prompt);
    request.prompt_tokens = prompt;
    request.output_tokens = output;
  }
  return result;
}

}  // namespace servelab
