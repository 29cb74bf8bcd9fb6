// The trace options `servelab replay` and `servelab compare` share (see trace_options.h).
#include "cli/trace_options.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "common/error.h"
#include "replay/azure_trace.h"
#include "replay/synthetic.h"

namespace servelab::cli {
namespace {

std::pair<double, double> parse_window(const std::string& text) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos) fail("--window must be A:B (seconds), got '", text, "'");
  return {std::stod(text.substr(0, colon)), std::stod(text.substr(colon + 1))};
}

std::vector<TraceRequest> load_trace_file(const std::string& format, const std::string& path) {
  if (format == "azure") return load_azure_trace(path);
  if (format == "burstgpt") return load_burstgpt_trace(path);
  if (format == "mooncake") return load_mooncake_trace(path);
  fail("--format must be azure, burstgpt, mooncake or synthetic, got '", format, "'");
}

/// A --prompt-lengths / --output-lengths value: a parsed distribution, or "trace:FORMAT:FILE",
/// the lengths of a real trace resampled (prompts or outputs, as `prompts` says), scaled by
/// `scale` like the real trace itself would be.
LengthDistribution length_option(const std::string& text, bool prompts, double scale) {
  if (text.rfind("trace:", 0) != 0) return parse_length_distribution(text);
  const size_t colon = text.find(':', 6);
  if (colon == std::string::npos)
    fail("a resampled length distribution is trace:FORMAT:FILE, got '", text, "'");
  const std::vector<TraceRequest> source =
      load_trace_file(text.substr(6, colon - 6), text.substr(colon + 1));
  LengthDistribution lengths;
  lengths.kind = LengthDistribution::Kind::kResample;
  for (const TraceRequest& request : source) {
    const int64_t length = prompts ? request.prompt_tokens : request.output_tokens;
    lengths.samples.push_back(
        std::max<int64_t>(1, std::llround(static_cast<double>(length) * scale)));
  }
  if (lengths.samples.empty()) fail(text.substr(colon + 1), ": the trace has no requests");
  return lengths;
}

}  // namespace

std::vector<TraceRequest> build_trace(const Arguments& options, int64_t context, uint64_t seed) {
  const std::string format = options.get("format", "");
  std::vector<TraceRequest> trace;
  // Real traces keep their lengths on a model whose context is 2,048 tokens or more, and are
  // scaled by context / 2048 on a smaller one (the embedded model: 512, so a quarter).
  const double real_trace_scale = std::min(1.0, static_cast<double>(context) / 2048.0);
  double default_scale = real_trace_scale;
  if (format == "synthetic") {
    SyntheticTraceOptions synthetic = azure_conversation_like(
        options.get_int("requests", 200), options.get_double("rate", 2.0), context);
    synthetic.burstiness = options.get_double("burstiness", synthetic.burstiness);
    if (options.has("prompt-lengths"))
      synthetic.prompt = length_option(options.get("prompt-lengths", ""), true, real_trace_scale);
    if (options.has("output-lengths"))
      synthetic.output = length_option(options.get("output-lengths", ""), false, real_trace_scale);
    synthetic.seed = seed;
    trace = synthesize_trace(synthetic);
    default_scale = 1.0;
  } else {
    const std::string path = options.get("trace", "");
    if (path.empty()) fail("--trace FILE is required for --format ", format);
    trace = load_trace_file(format, path);
    if (options.has("rate")) trace = at_rate(trace, options.get_double("rate", 1.0));
  }
  if (options.has("window")) {
    const auto [start, end] = parse_window(options.get("window", ""));
    trace = time_window(trace, start, end);
  }
  if (options.has("speedup")) trace = speed_up(trace, options.get_double("speedup", 1.0));
  trace = first_requests(trace, options.get_int("limit", 0));
  trace = fit_to_context(trace, options.get_double("length-scale", default_scale), context);
  if (trace.empty()) fail("the trace has no request left to replay");
  return trace;
}

}  // namespace servelab::cli
