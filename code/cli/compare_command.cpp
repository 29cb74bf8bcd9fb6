// `servelab compare`: the batching comparison. Runs a static-batching server and a continuous-
// batching server (preemption by swap, then by recompute) on the same model and device, one after
// the other, in this process, each behind its own HTTP server on loopback; replays the same trace
// against each; prints a side-by-side table and writes the per-run results and a markdown report.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "backend/backend_factory.h"
#include "cli/arguments.h"
#include "cli/commands.h"
#include "cli/replay_results.h"
#include "cli/trace_options.h"
#include "common/error.h"
#include "model/llama_model.h"
#include "protocol/chat_template.h"
#include "replay/latency_metrics.h"
#include "replay/prompt_synthesis.h"
#include "replay/replay_driver.h"
#include "scheduler/continuous_engine.h"
#include "scheduler/static_batcher.h"
#include "server/http_server.h"
#include "tokenizer/tokenizer.h"

namespace servelab::cli {
namespace {

const char* kCompareHelp = R"(usage: servelab compare [options]

Compares static batching with continuous batching (preemption by swap, and by recompute) on the
same model, device and trace: each server runs in turn on 127.0.0.1, the same trace is replayed
against each, and a side-by-side table is printed. With no options: the embedded model on the CPU
(or the GPU when present) and a built-in synthetic trace shaped like the Azure conversation trace.

options:
  --model DIR, --device D          as for serve (defaults: the embedded model, auto)
  --servers LIST                   which servers, in order (default
                                   static,continuous-swap,continuous-recompute)
  --max-batch N                    the most sequences in one forward call, for both: static
                                   batching's package size and continuous batching's running
                                   sequences (default 16)
  --batch-max-tokens N             continuous batching's tokens per step (default 4096)
  --num-gpu-blocks N               continuous batching's KV blocks of 16 tokens (default: 256 on
                                   the CPU, 85% of the free memory on a GPU)
  --num-cpu-blocks N               its swap space (default 256)
  --slo-ttft-ms T, --slo-tpot-ms T goodput's SLOs (default 2000 and 100)
  --out DIR                        results (default compare-results): report.md, the plots
                                   latency_cdf.svg and over_time.svg (with gnuplot), and one
                                   folder per server as `servelab replay` writes
  and the trace options of `servelab replay` (default: --format synthetic --requests 40 --rate 1.5)
)";

const std::vector<std::string> kServerKinds = {"static", "continuous-swap", "continuous-recompute"};

std::vector<std::string> parse_servers(const std::string& text) {
  std::vector<std::string> servers;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string name = text.substr(start, comma - start);
    if (std::find(kServerKinds.begin(), kServerKinds.end(), name) == kServerKinds.end())
      fail("--servers: '", name,
           "' is not a server; choose from static, continuous-swap, continuous-recompute");
    servers.push_back(name);
    start = comma + 1;
  }
  return servers;
}

struct Run {
  std::string name;
  RunSummary summary;
  int64_t preemptions = 0;
  double peak_kv_usage = 0;
};

}  // namespace

int run_compare(const std::vector<std::string>& args) {
  if (asks_for_help(args)) {
    std::cout << kCompareHelp;
    return 0;
  }
  std::set<std::string> option_names = {"model",
                                        "device",
                                        "servers",
                                        "max-batch",
                                        "batch-max-tokens",
                                        "num-gpu-blocks",
                                        "num-cpu-blocks",
                                        "slo-ttft-ms",
                                        "slo-tpot-ms",
                                        "out",
                                        "seed"};
  for (const char* name : kTraceOptionNames) option_names.insert(name);
  std::vector<std::string> with_defaults = {"--format", "synthetic", "--requests",
                                            "40",       "--rate",    "1.5"};
  bool has_format = false;
  for (const std::string& arg : args) has_format = has_format || arg.rfind("--format", 0) == 0;
  if (has_format) with_defaults.clear();
  with_defaults.insert(with_defaults.end(), args.begin(), args.end());
  Arguments options(with_defaults, option_names, {});

  const std::vector<std::string> servers =
      parse_servers(options.get("servers", "static,continuous-swap,continuous-recompute"));
  const int64_t max_batch = options.get_int("max-batch", 16);
  if (max_batch < 1) fail("--max-batch must be at least 1, got ", max_batch);
  const std::string model_dir = options.get("model", default_model_dir());
  BackendChoice choice;
  choice.device = resolve_device(options.get("device", "auto"));
  choice.checkpoint_dtype = ModelConfig::load(model_dir).torch_dtype;
  std::unique_ptr<Backend> backend = make_backend(choice);
  LlamaModel model = LlamaModel::load(model_dir, *backend);
  const ModelConfig& config = model.config();
  const Tokenizer tokenizer =
      Tokenizer::load(model_dir, SpecialTokens{config.bos_token_id, config.eos_token_ids});
  const uint64_t seed = static_cast<uint64_t>(options.get_int("seed", 1));
  const std::vector<TraceRequest> trace =
      build_trace(options, config.max_position_embeddings, seed);
  const std::vector<std::string> prompts = synthesize_prompts(tokenizer, trace, seed);
  const Slo slo{options.get_double("slo-ttft-ms", 2000) / 1000.0,
                options.get_double("slo-tpot-ms", 100) / 1000.0};
  const std::string out = options.get("out", "compare-results");
  mkdir(out.c_str(), 0755);
  ProtocolLimits limits;
  limits.served_model_name = "model";
  // One description of the trace, for the console and for the report.
  int64_t trace_output_tokens = 0, trace_prompt_tokens = 0;
  for (const TraceRequest& request : trace) {
    trace_output_tokens += request.output_tokens;
    trace_prompt_tokens += request.prompt_tokens;
  }
  const int64_t count = static_cast<int64_t>(trace.size());
  char trace_summary[160];
  std::snprintf(trace_summary, sizeof trace_summary,
                "%lld requests over %.1f s, mean prompt %lld tokens, mean output %lld tokens",
                static_cast<long long>(count),
                trace.back().arrival_seconds - trace.front().arrival_seconds,
                static_cast<long long>(trace_prompt_tokens / count),
                static_cast<long long>(trace_output_tokens / count));
  std::cerr << "servelab compare: " << trace_summary << ", on " << backend->name() << std::endl;

  std::vector<Run> runs;
  for (const std::string& kind : servers) {
    std::unique_ptr<ServingEngine> engine;
    nlohmann::json settings;
    if (kind == "static") {
      StaticBatcherOptions static_options;
      static_options.package_max_workload = max_batch;
      // Every request of a trace has its own length: with the historical identical-config rule
      // each would run alone. Packing across token budgets makes static batching the stronger
      // baseline; what it still lacks is what continuous batching adds.
      static_options.pack_across_token_budgets = true;
      settings = {{"package_max_workload", max_batch}, {"pack_across_token_budgets", true}};
      engine = std::make_unique<StaticBatcher>(model, tokenizer, static_options);
    } else {
      ContinuousEngineOptions continuous;
      continuous.scheduler.preemption_mode =
          kind == "continuous-swap" ? PreemptionMode::kSwap : PreemptionMode::kRecompute;
      continuous.scheduler.batch_max_beams = max_batch;
      continuous.scheduler.batch_max_tokens = options.get_int("batch-max-tokens", 4096);
      continuous.scheduler.blocks.block_size = 16;
      const KvCacheShape shape = kv_cache_shape(model, 16);
      continuous.scheduler.blocks.num_gpu_blocks = options.get_int(
          "num-gpu-blocks", choice.device == "cpu" ? 256
                                                   : gpu_blocks_for_memory_fraction(
                                                         *backend, shape, 0.85, int64_t{1} << 30));
      continuous.scheduler.blocks.num_cpu_blocks =
          kind == "continuous-swap" ? options.get_int("num-cpu-blocks", 256) : 0;
      settings = {{"batch_max_beams", max_batch},
                  {"batch_max_tokens", continuous.scheduler.batch_max_tokens},
                  {"num_gpu_blocks", continuous.scheduler.blocks.num_gpu_blocks},
                  {"num_cpu_blocks", continuous.scheduler.blocks.num_cpu_blocks},
                  {"block_size", 16}};
      engine = std::make_unique<ContinuousEngine>(model, tokenizer, continuous);
    }
    engine->start();
    ServerOptions server_options;
    server_options.port = 0;
    server_options.max_inflight_requests = 4096;
    HttpServer server(*engine, tokenizer, config.max_position_embeddings, limits,
                      ChatTemplate::from_model_dir(model_dir), server_options);
    server.start();
    std::cerr << "servelab compare: " << kind << std::endl;
    ReplayOptions replay;
    replay.url = "http://127.0.0.1:" + std::to_string(server.bound_port());
    replay.scrape_interval_seconds = 0.5;
    const int64_t total = static_cast<int64_t>(trace.size());
    replay.progress = [total](int64_t sent, int64_t finished, int64_t tokens, double seconds) {
      print_progress(total, sent, finished, tokens, seconds);
    };
    const ReplayResult result = replay_trace(
        trace, [&](size_t i) { return prompts[i]; }, replay);
    print_progress(total, total, total, -1, result.duration_seconds);
    std::cerr << std::endl;
    Run run;
    run.name = kind;
    run.summary = summarize(result.timings, slo);
    const EngineGauges gauges = engine->gauges();
    run.preemptions = gauges.preemptions_swap + gauges.preemptions_recompute;
    for (const ServerSample& sample : result.samples)
      run.peak_kv_usage = std::max(run.peak_kv_usage, sample.kv_usage);
    server.shutdown(std::chrono::milliseconds(0));
    engine->stop(std::chrono::milliseconds(0));
    const std::string dir = out + "/" + kind;
    mkdir(dir.c_str(), 0755);
    write_run_results(dir, trace, result, run.summary, slo,
                      {{"server", kind},
                       {"settings", settings},
                       {"preemptions", run.preemptions},
                       {"peak_kv_usage", run.peak_kv_usage}});
    runs.push_back(run);
  }

  std::ostringstream table;
  table << "|";
  for (const Run& run : runs) table << " | " << run.name;
  table << " |\n| ---";
  for (size_t i = 0; i < runs.size(); ++i) table << " | ---";
  table << " |\n";
  auto row = [&](const std::string& label, auto value) {
    table << "| " << label;
    for (const Run& run : runs) table << " | " << value(run);
    table << " |\n";
  };
  auto fixed = [](double value, int digits) {
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", digits, value);
    return std::string(text);
  };
  row("requests/s", [&](const Run& r) { return fixed(r.summary.request_throughput, 2); });
  row("output tokens/s", [&](const Run& r) { return fixed(r.summary.output_token_throughput, 1); });
  row("goodput (req/s)", [&](const Run& r) { return fixed(r.summary.goodput, 2); });
  row("met both SLOs", [&](const Run& r) {
    return std::to_string(r.summary.met_slo) + " of " + std::to_string(r.summary.requests);
  });
  row("TTFT p50 / p90 / p99 (s)", [&](const Run& r) {
    return fixed(r.summary.ttft.median, 3) + " / " + fixed(r.summary.ttft.p90, 3) + " / " +
           fixed(r.summary.ttft.p99, 3);
  });
  row("TPOT p50 / p90 / p99 (ms)", [&](const Run& r) {
    return fixed(r.summary.tpot.median * 1e3, 1) + " / " + fixed(r.summary.tpot.p90 * 1e3, 1) +
           " / " + fixed(r.summary.tpot.p99 * 1e3, 1);
  });
  row("E2E p50 / p90 / p99 (s)", [&](const Run& r) {
    return fixed(r.summary.e2e.median, 2) + " / " + fixed(r.summary.e2e.p90, 2) + " / " +
           fixed(r.summary.e2e.p99, 2);
  });
  row("duration (s)", [&](const Run& r) { return fixed(r.summary.duration_seconds, 1); });
  row("preemptions", [&](const Run& r) {
    return r.name == "static" ? std::string("none (reserves up front)")
                              : std::to_string(r.preemptions);
  });
  row("peak KV usage", [&](const Run& r) {
    return r.name == "static" ? std::string("n/a (a cache per row)")
                              : fixed(r.peak_kv_usage * 100, 0) + "%";
  });
  row("failed", [&](const Run& r) { return std::to_string(r.summary.failed); });
  std::cout << table.str();

  std::vector<std::string> names;
  for (const Run& run : runs) names.push_back(run.name);
  const bool plotted = draw_plots(out, compare_plot_script(names, names, slo), "servelab compare");
  std::ostringstream report;
  report << "# servelab compare\n\n"
         << "- Model: `" << model_dir << "` on " << backend->name() << ".\n"
         << "- Trace: " << trace_summary << "; open loop.\n"
         << "- SLOs: TTFT <= " << slo.ttft_seconds << " s and TPOT <= " << slo.tpot_seconds * 1e3
         << " ms. Goodput counts the requests that met both, per second of the run.\n"
         << "- Most sequences per forward call: " << max_batch
         << " for every server. The static server packs requests that differ only in their "
            "token budgets together (`pack_across_token_budgets`); each row stops at its own "
            "length, and a package runs until its longest row ends.\n\n"
         << table.str() << "\n";
  if (plotted)
    report << "![latency CDFs](latency_cdf.svg)\n\n![over time](over_time.svg)\n";
  else
    report << "Plots: install gnuplot and run `gnuplot plots.gnuplot` in this folder.\n";
  report << "\nPer-request rows, the server's queues and the summaries are in ";
  for (size_t i = 0; i < names.size(); ++i) report << (i ? ", " : "") << "`" << names[i] << "/`";
  report << ".\n";
  std::ofstream(out + "/report.md") << report.str();
  std::cerr << "servelab compare: report in " << out << "/report.md" << std::endl;
  int failed = 0;
  for (const Run& run : runs) failed += static_cast<int>(run.summary.failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace servelab::cli
