// `servelab compare`: the batching comparison. Runs a static-batching server and a continuous-
// batching server (preemption by swap, then by recompute) on the same model and device, one after
// the other, in this process, each behind its own HTTP server on loopback; replays the same trace
// against each; prints a side-by-side table and writes the per-run results and a markdown report.
#include <sys/stat.h>

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
  --package-max-workload N         static batching's package size (default 8)
  --num-gpu-blocks N               continuous batching's KV blocks (default: 256 on the CPU, from
                                   memory on a GPU)
  --num-cpu-blocks N               its swap space (default 256)
  --batch-max-beams N              its running sequences (default 32)
  --slo-ttft-ms T, --slo-tpot-ms T goodput's SLOs (default 2000 and 100)
  --out DIR                        results (default compare-results)
  and the trace options of `servelab replay` (default: --format synthetic --requests 40 --rate 1.5)
)";

struct Run {
  std::string name;
  RunSummary summary;
  int64_t preemptions = 0;
  double peak_kv_usage = 0;
};

}  // namespace

int run_compare(const std::vector<std::string>& args) {
  for (const auto& arg : args) {
    if (arg == "--help" || arg == "-h") {
      std::cout << kCompareHelp;
      return 0;
    }
  }
  std::set<std::string> names = {"model",
                                 "device",
                                 "package-max-workload",
                                 "num-gpu-blocks",
                                 "num-cpu-blocks",
                                 "batch-max-beams",
                                 "slo-ttft-ms",
                                 "slo-tpot-ms",
                                 "out",
                                 "seed"};
  for (const char* name : kTraceOptionNames) names.insert(name);
  std::vector<std::string> with_defaults = {"--format", "synthetic", "--requests",
                                            "40",       "--rate",    "1.5"};
  bool has_format = false;
  for (const std::string& arg : args) has_format = has_format || arg.rfind("--format", 0) == 0;
  if (has_format) with_defaults.clear();
  with_defaults.insert(with_defaults.end(), args.begin(), args.end());
  Arguments options(with_defaults, names, {});

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
  std::vector<std::string> prompts;
  for (size_t i = 0; i < trace.size(); ++i)
    prompts.push_back(synthesize_prompt(tokenizer, std::max<int64_t>(2, trace[i].prompt_tokens),
                                        seed * 1000003 + i, trace[i].hash_ids));
  const Slo slo{options.get_double("slo-ttft-ms", 2000) / 1000.0,
                options.get_double("slo-tpot-ms", 100) / 1000.0};
  const std::string out = options.get("out", "compare-results");
  mkdir(out.c_str(), 0755);
  ProtocolLimits limits;
  limits.served_model_name = "model";

  std::vector<Run> runs;
  for (const std::string kind : {"static", "continuous-swap", "continuous-recompute"}) {
    std::unique_ptr<ServingEngine> engine;
    if (kind == "static") {
      StaticBatcherOptions static_options;
      static_options.package_max_workload = options.get_int("package-max-workload", 8);
      engine = std::make_unique<StaticBatcher>(model, tokenizer, static_options);
    } else {
      ContinuousEngineOptions continuous;
      continuous.scheduler.preemption_mode =
          kind == "continuous-swap" ? PreemptionMode::kSwap : PreemptionMode::kRecompute;
      continuous.scheduler.batch_max_beams = options.get_int("batch-max-beams", 32);
      continuous.scheduler.blocks.block_size = 16;
      const KvCacheShape shape = kv_cache_shape(model, 16);
      continuous.scheduler.blocks.num_gpu_blocks = options.get_int(
          "num-gpu-blocks", choice.device == "cpu" ? 256
                                                   : gpu_blocks_for_memory_fraction(
                                                         *backend, shape, 0.85, int64_t{1} << 30));
      continuous.scheduler.blocks.num_cpu_blocks =
          kind == "continuous-swap" ? options.get_int("num-cpu-blocks", 256) : 0;
      engine = std::make_unique<ContinuousEngine>(model, tokenizer, continuous);
    }
    engine->start();
    ServerOptions server_options;
    server_options.port = 0;
    server_options.max_inflight_requests = 4096;
    HttpServer server(*engine, tokenizer, config.max_position_embeddings, limits,
                      ChatTemplate::from_model_dir(model_dir), server_options);
    server.start();
    std::cerr << "servelab compare: " << kind << " (" << trace.size() << " requests)" << std::endl;
    ReplayOptions replay;
    replay.url = "http://127.0.0.1:" + std::to_string(server.bound_port());
    replay.scrape_interval_seconds = 0.5;
    const int64_t total = static_cast<int64_t>(trace.size());
    replay.progress = [total](int64_t, int64_t finished, int64_t, double seconds) {
      std::fprintf(stderr, "\r  %lld/%lld done, %.0f s ", static_cast<long long>(finished),
                   static_cast<long long>(total), seconds);
    };
    const ReplayResult result = replay_trace(
        trace, [&](size_t i) { return prompts[i]; }, replay);
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
    runs.push_back(run);
  }

  std::ostringstream table;
  table << "| | static | continuous (swap) | continuous (recompute) |\n| --- | --- | --- | --- |\n";
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
  row("TTFT p50 / p90 / p99 (s)", [&](const Run& r) {
    return fixed(r.summary.ttft.median, 3) + " / " + fixed(r.summary.ttft.p90, 3) + " / " +
           fixed(r.summary.ttft.p99, 3);
  });
  row("TPOT p50 / p90 (s)", [&](const Run& r) {
    return fixed(r.summary.tpot.median, 4) + " / " + fixed(r.summary.tpot.p90, 4);
  });
  row("E2E p50 / p90 (s)", [&](const Run& r) {
    return fixed(r.summary.e2e.median, 2) + " / " + fixed(r.summary.e2e.p90, 2);
  });
  row("preemptions", [&](const Run& r) { return std::to_string(r.preemptions); });
  row("peak KV usage", [&](const Run& r) { return fixed(r.peak_kv_usage * 100, 0) + "%"; });
  row("failed", [&](const Run& r) { return std::to_string(r.summary.failed); });
  std::cout << table.str();
  std::ofstream(out + "/report.md")
      << "# servelab compare\n\nModel `" << model_dir << "` on " << backend->name() << ", "
      << trace.size() << " requests; SLOs: TTFT <= " << slo.ttft_seconds
      << " s, TPOT <= " << slo.tpot_seconds << " s.\n\n"
      << table.str();
  int failed = 0;
  for (const Run& run : runs) failed += static_cast<int>(run.summary.failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace servelab::cli
