// `servelab replay`: sends a trace (a real one, or a synthetic one) to a server or the balancer and
// writes what it measured: one CSV row per request, a JSON summary, the server's queues over time,
// and plots (with gnuplot, when installed).
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/arguments.h"
#include "cli/commands.h"
#include "cli/replay_results.h"
#include "cli/trace_options.h"
#include "common/error.h"
#include "model/model_config.h"
#include "replay/azure_trace.h"
#include "replay/latency_metrics.h"
#include "replay/prompt_synthesis.h"
#include "replay/replay_driver.h"
#include "replay/synthetic.h"
#include "tokenizer/tokenizer.h"

namespace servelab::cli {
namespace {

const char* kReplayHelp =
    R"(usage: servelab replay --url URL [--trace FILE --format F | --format synthetic ...] [options]

Replays a traffic trace against a server or the balancer, streaming, and measures per request the
time to first token, the inter-token latencies, the time per output token and the end-to-end
latency. Writes OUT/requests.csv, OUT/server.csv, OUT/throughput.csv, OUT/summary.json and, with
gnuplot, OUT/latency_cdf.svg and OUT/over_time.svg.

trace:
  --trace FILE            the trace file (not with --format synthetic)
  --format F              azure, burstgpt, mooncake or synthetic
  --requests N            synthetic: how many (default 200)
  --rate R                synthetic: requests per second (default 2); real traces: replay at
                          this mean rate
  --burstiness B          synthetic: gamma shape of the gaps, 1 = Poisson (default 0.84, the
                          Azure conversation trace's)
  --prompt-lengths D      synthetic: fixed:N, uniform:A:B, exp:MEAN, capped-exp:MEAN:CAP, or
                          trace:FORMAT:FILE (resampled from a real trace's lengths, scaled as
                          that trace would be)
  --output-lengths D      synthetic: the same (default: the Azure conversation trace's shape)
  --window A:B            keep the requests arriving in [A, B) seconds
  --speedup X             replay X times faster
  --limit N               the first N requests only
  --length-scale S        multiply prompt and output lengths by S (default for real traces:
                          1 with a context of 2048 or more, else context / 2048), then clip
                          them to the context
load:
  --url URL               the server or balancer (required)
  --concurrency C         closed loop with C requests in flight (default: open loop)
  --model DIR             the model whose tokenizer writes the prompts (default: embedded)
  --slo-ttft-ms T         goodput counts requests with TTFT <= T ...
  --slo-tpot-ms T         ... and TPOT <= T (default 2000 and 100)
  --seed S                prompts and synthetic traces (default 1)
  --out DIR               where results go (default replay-results)
)";

}  // namespace

int run_replay(const std::vector<std::string>& args) {
  if (asks_for_help(args)) {
    std::cout << kReplayHelp;
    return 0;
  }
  Arguments options(args,
                    {"trace", "format", "requests", "rate", "burstiness", "prompt-lengths",
                     "output-lengths", "window", "speedup", "limit", "length-scale", "url",
                     "concurrency", "model", "slo-ttft-ms", "slo-tpot-ms", "seed", "out"},
                    {});
  const std::string url = options.get("url", "");
  if (url.empty()) fail("--url is required (a server or the balancer, e.g. http://127.0.0.1:8000)");
  const std::string model_dir = options.get("model", default_model_dir());
  const int64_t context = ModelConfig::load(model_dir).max_position_embeddings;
  const uint64_t seed = static_cast<uint64_t>(options.get_int("seed", 1));

  const std::vector<TraceRequest> trace = build_trace(options, context, seed);

  std::cerr << "servelab replay: writing " << trace.size() << " prompts..." << std::endl;
  const Tokenizer tokenizer = Tokenizer::load(model_dir);
  const std::vector<std::string> prompts = synthesize_prompts(tokenizer, trace, seed);

  ReplayOptions replay;
  replay.url = url;
  replay.concurrency = options.get_int("concurrency", 0);
  const int64_t total = static_cast<int64_t>(trace.size());
  replay.progress = [total](int64_t sent, int64_t finished, int64_t tokens, double seconds) {
    print_progress(total, sent, finished, tokens, seconds);
  };
  const ReplayResult result = replay_trace(
      trace, [&](size_t i) { return prompts[i]; }, replay);
  print_progress(total, total, total, -1, result.duration_seconds);
  std::cerr << "\n";

  const std::string out = options.get("out", "replay-results");
  mkdir(out.c_str(), 0755);
  const Slo slo{options.get_double("slo-ttft-ms", 2000) / 1000.0,
                options.get_double("slo-tpot-ms", 100) / 1000.0};
  const RunSummary summary = summarize(result.timings, slo);
  write_run_results(out, trace, result, summary, slo,
                    {{"url", url}, {"concurrency", replay.concurrency}});
  draw_plots(out, run_plot_script(slo), "servelab replay");
  std::printf(
      "servelab replay: %lld requests (%lld failed) in %.1f s: %.2f requests/s, %.0f "
      "tokens/s, goodput %.2f/s; TTFT p50 %.3f s p99 %.3f s; TPOT p50 %.4f s; results in %s\n",
      static_cast<long long>(summary.requests), static_cast<long long>(summary.failed),
      summary.duration_seconds, summary.request_throughput, summary.output_token_throughput,
      summary.goodput, summary.ttft.median, summary.ttft.p99, summary.tpot.median, out.c_str());
  return summary.failed == 0 ? 0 : 1;
}

}  // namespace servelab::cli
