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
latency. Writes OUT/requests.csv, OUT/summary.json, OUT/server.csv and, with gnuplot, plots.

trace:
  --trace FILE            the trace file (not with --format synthetic)
  --format F              azure, burstgpt, mooncake or synthetic
  --requests N            synthetic: how many (default 200)
  --rate R                synthetic: requests per second; real traces: replay at this mean rate
  --burstiness B          synthetic: gamma shape of the gaps, 1 = Poisson (default 1)
  --prompt-lengths D      synthetic: fixed:N, uniform:A:B, exp:MEAN, capped-exp:MEAN:CAP
  --output-lengths D      synthetic: the same (default: the Azure conversation trace's shape)
  --window A:B            keep the requests arriving in [A, B) seconds
  --speedup X             replay X times faster
  --limit N               the first N requests only
  --length-scale S        multiply prompt and output lengths by S (default: context / 2048 for
                          real traces, 1 for synthetic ones); then clipped to the context
load:
  --url URL               the server or balancer (required)
  --concurrency C         closed loop with C requests in flight (default: open loop)
  --model DIR             the model whose tokenizer writes the prompts (default: embedded)
  --slo-ttft-ms T         goodput counts requests with TTFT <= T ...
  --slo-tpot-ms T         ... and TPOT <= T (default 2000 and 100)
  --seed S                prompts and synthetic traces (default 1)
  --out DIR               where results go (default replay-results)
)";

std::pair<double, double> parse_window(const std::string& text) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos) fail("--window must be A:B (seconds), got '", text, "'");
  return {std::stod(text.substr(0, colon)), std::stod(text.substr(colon + 1))};
}

}  // namespace

std::vector<TraceRequest> build_trace(const Arguments& options, int64_t context, uint64_t seed) {
  const std::string format = options.get("format", "");
  std::vector<TraceRequest> trace;
  double default_scale = static_cast<double>(context) / 2048.0;
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

namespace {

void progress_bar(int64_t total, int64_t sent, int64_t finished, int64_t tokens, double seconds) {
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * finished / total) : 0;
  std::fprintf(stderr, "\r[%s%s] %lld/%lld done, %lld sent, %.0f tokens/s, %.0f s ",
               std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
               static_cast<long long>(finished), static_cast<long long>(total),
               static_cast<long long>(sent), seconds > 0 ? tokens / seconds : 0.0, seconds);
  std::fflush(stderr);
}

nlohmann::json percentiles_json(const Percentiles& p) {
  return {
      {"mean", p.mean}, {"median", p.median}, {"p90", p.p90}, {"p99", p.p99}, {"count", p.count}};
}

/// Plots with gnuplot when it is installed: the latency CDFs, and throughput and queues over time.
void plot(const std::string& out) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::cerr << "servelab replay: gnuplot not found: no plots (apt-get install gnuplot-nox)\n";
    return;
  }
  const std::string script = out + "/plots.gnuplot";
  std::ofstream(script)
      << "set datafile separator ','\n"
         "set terminal svg size 900,500\n"
         "set output '" +
             out +
             "/latency_cdf.svg'\n"
             "set title 'Latency CDFs'\nset xlabel 'seconds'\nset ylabel 'fraction of requests'\n"
             "set key bottom right\n"
             "plot '" +
             out +
             "/requests.csv' using 8:(1) smooth cnorm title 'TTFT' with lines, "
             "'' using 10:(1) smooth cnorm title 'end-to-end' with lines\n"
             "set output '" +
             out +
             "/server.svg'\n"
             "set title 'Server queues over time'\nset xlabel 'seconds'\nset ylabel 'requests'\n"
             "set key top right\n"
             "plot '" +
             out +
             "/server.csv' using 1:2 title 'running' with lines, "
             "'' using 1:3 title 'waiting' with lines, '' using 1:4 title 'swapped' with lines\n";
  if (std::system(("gnuplot '" + script + "' 2>/dev/null").c_str()) != 0)
    std::cerr << "servelab replay: gnuplot failed; see " << script << "\n";
}

}  // namespace

int run_replay(const std::vector<std::string>& args) {
  for (const auto& arg : args) {
    if (arg == "--help" || arg == "-h") {
      std::cout << kReplayHelp;
      return 0;
    }
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
  std::vector<std::string> prompts;
  for (size_t i = 0; i < trace.size(); ++i)
    prompts.push_back(synthesize_prompt(tokenizer, std::max<int64_t>(2, trace[i].prompt_tokens),
                                        seed * 1000003 + i, trace[i].hash_ids));

  ReplayOptions replay;
  replay.url = url;
  replay.concurrency = options.get_int("concurrency", 0);
  const int64_t total = static_cast<int64_t>(trace.size());
  replay.progress = [total](int64_t sent, int64_t finished, int64_t tokens, double seconds) {
    progress_bar(total, sent, finished, tokens, seconds);
  };
  const ReplayResult result = replay_trace(
      trace, [&](size_t i) { return prompts[i]; }, replay);
  progress_bar(total, total, total, 0, result.duration_seconds);
  std::cerr << "\n";

  const std::string out = options.get("out", "replay-results");
  mkdir(out.c_str(), 0755);
  {
    std::ofstream csv(out + "/requests.csv");
    csv << "index,arrival_s,sent_s,prompt_tokens,max_tokens,output_tokens,ok,ttft_s,tpot_s,e2e_s,"
           "error\n";
    for (size_t i = 0; i < trace.size(); ++i) {
      const RequestTiming& timing = result.timings[i];
      const RequestLatency latency = latency_of(timing);
      csv << i << ',' << trace[i].arrival_seconds << ',' << timing.sent << ','
          << trace[i].prompt_tokens << ',' << trace[i].output_tokens << ',' << timing.output_tokens
          << ',' << (timing.ok ? 1 : 0) << ',' << latency.ttft << ',' << latency.tpot << ','
          << latency.e2e << ',' << timing.error << '\n';
    }
    std::ofstream server(out + "/server.csv");
    server << "time_s,running,waiting,swapped,kv_usage\n";
    for (const ServerSample& s : result.samples)
      server << s.time << ',' << s.running << ',' << s.waiting << ',' << s.swapped << ','
             << s.kv_usage << '\n';
  }
  const Slo slo{options.get_double("slo-ttft-ms", 2000) / 1000.0,
                options.get_double("slo-tpot-ms", 100) / 1000.0};
  const RunSummary summary = summarize(result.timings, slo);
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [kind, count] : summary.errors) errors[kind] = count;
  const nlohmann::json json = {
      {"url", url},
      {"requests", summary.requests},
      {"succeeded", summary.succeeded},
      {"failed", summary.failed},
      {"errors", errors},
      {"duration_s", summary.duration_seconds},
      {"request_throughput", summary.request_throughput},
      {"output_token_throughput", summary.output_token_throughput},
      {"slo", {{"ttft_s", slo.ttft_seconds}, {"tpot_s", slo.tpot_seconds}}},
      {"goodput", summary.goodput},
      {"met_slo", summary.met_slo},
      {"ttft_s", percentiles_json(summary.ttft)},
      {"tpot_s", percentiles_json(summary.tpot)},
      {"itl_s", percentiles_json(summary.itl)},
      {"e2e_s", percentiles_json(summary.e2e)}};
  std::ofstream(out + "/summary.json") << json.dump(2) << "\n";
  plot(out);
  std::printf(
      "servelab replay: %lld requests (%lld failed) in %.1f s: %.2f requests/s, %.0f "
      "tokens/s, goodput %.2f/s; TTFT p50 %.3f s p99 %.3f s; TPOT p50 %.4f s; results in %s\n",
      static_cast<long long>(summary.requests), static_cast<long long>(summary.failed),
      summary.duration_seconds, summary.request_throughput, summary.output_token_throughput,
      summary.goodput, summary.ttft.median, summary.ttft.p99, summary.tpot.median, out.c_str());
  return summary.failed == 0 ? 0 : 1;
}

}  // namespace servelab::cli
