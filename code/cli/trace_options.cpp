// The trace options `servelab replay` and `servelab compare` share (see trace_options.h).
#include "cli/trace_options.h"

#include <algorithm>
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

}  // namespace

std::vector<TraceRequest> build_trace(const Arguments& options, int64_t context, uint64_t seed) {
  const std::string format = options.get("format", "");
  std::vector<TraceRequest> trace;
  // Real traces keep their lengths on a model whose context is 2,048 tokens or more, and are
  // scaled by context / 2048 on a smaller one (the embedded model: 512, so a quarter).
  double default_scale = std::min(1.0, static_cast<double>(context) / 2048.0);
  if (format == "synthetic") {
    SyntheticTraceOptions synthetic = azure_conversation_like(
        options.get_int("requests", 200), options.get_double("rate", 2.0), context);
    synthetic.burstiness = options.get_double("burstiness", synthetic.burstiness);
    if (options.has("prompt-lengths"))
      synthetic.prompt = parse_length_distribution(options.get("prompt-lengths", ""));
    if (options.has("output-lengths"))
      synthetic.output = parse_length_distribution(options.get("output-lengths", ""));
    synthetic.seed = seed;
    trace = synthesize_trace(synthetic);
    default_scale = 1.0;
  } else {
    const std::string path = options.get("trace", "");
    if (path.empty()) fail("--trace FILE is required for --format ", format);
    if (format == "azure") {
      trace = load_azure_trace(path);
    } else if (format == "burstgpt") {
      trace = load_burstgpt_trace(path);
    } else if (format == "mooncake") {
      trace = load_mooncake_trace(path);
    } else {
      fail("--format must be azure, burstgpt, mooncake or synthetic, got '", format, "'");
    }
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
