// `servelab serve`: one model behind the HTTP API, with static batching (continuous batching
// comes with the scheduler of issue 7). Settings come from a JSON config file and/or flags (flags
// win); it prints where it listens, serves until SIGINT or SIGTERM, then drains and exits 0.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "backend/backend_factory.h"
#include "cli/arguments.h"
#include "cli/commands.h"
#include "common/error.h"
#include "model/llama_model.h"
#include "protocol/chat_template.h"
#include "scheduler/continuous_engine.h"
#include "scheduler/static_batcher.h"
#include "server/http_server.h"
#include "tokenizer/tokenizer.h"

namespace servelab::cli {
namespace {

const char* kServeHelp = R"(usage: servelab serve [options]

Serves a model over HTTP: POST /generate (native), /v1/completions and /v1/chat/completions
(OpenAI-compatible, streaming with "stream": true), GET /v1/models, /health and /metrics.
Stops on SIGINT or SIGTERM: new requests get 503, running ones finish (up to --grace seconds).
See docs/server.md (flags and config files), docs/static-batching.md, docs/continuous-batching.md.

options:
  --batching static|continuous   the scheduler (default: static)
  --config FILE            a JSON config file: sections "model", "batcher", "server", and for
                           continuous batching "cache" (sb_server_config.json,
                           cb_server_config.json); flags win
  --model DIR              Hugging Face model folder (default: the embedded model)
  --device auto|cpu|cuda   where to run (default: auto, the GPU when this build has CUDA and
                           one is present, else the CPU)
  --dtype D                auto, float32, bfloat16 or float16 (as for generate)
  --host H                 address to listen on (default: 127.0.0.1)
  --port N                 port (default: 8000; 0 picks a free one)
  --max-inflight N         requests in the system at once; past it 429 (default: 64)
  --payload-limit BYTES    largest request body; past it 413 (default: 1048576)
  --api-key KEY            require "Authorization: Bearer KEY" (default: none)
  --grace S                seconds running requests get to finish at shutdown (default: 30)
static batching:
  --package-max-workload N sequences per package (default: 8)
  --packaging-interval S   seconds between packings while a package runs (default: 0.05)
  --pack-across-token-budgets
                           let requests that differ only in max/min tokens share a package
continuous batching:
  --batch-max-tokens N     tokens one step computes, prompts plus one per decode (default: 4096)
  --batch-max-beams N      sequences running at once (default: 256)
  --preemption-mode M      swap or recompute (default: swap)
  --block-size N           tokens per KV block (default: 16)
  --num-gpu-blocks N       KV blocks attention reads (default: 0, sized from
                           --gpu-memory-fraction on a GPU; 2048 on the CPU)
  --gpu-memory-fraction F  share of GPU memory for weights plus KV blocks (default: 0.9)
  --num-cpu-blocks N       swap space in blocks (default: 0, sized from --swap-space)
  --swap-space GIB         swap space in GiB of pinned host memory (default: 4; CPU: 1)
  --watermark F            share of GPU blocks admission keeps free (default: 0.01)
  --enable-prefix-caching  reuse the KV blocks of shared prompt prefixes
)";

/// `section.key` of the config file, or `fallback`.
template <typename T>
T config_value(const nlohmann::json& config, const char* section, const char* key, T fallback) {
  if (!config.contains(section) || !config[section].contains(key)) return fallback;
  try {
    return config[section][key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("config: '", section, ".", key, "' has the wrong type (", config[section][key].dump(),
         ")");
  }
}

/// Every key a config file may hold, by section; anything else is a mistake worth an error.
const std::map<std::string, std::set<std::string>>& known_config_keys() {
  static const std::map<std::string, std::set<std::string>> keys = {
      {"model", {"path", "device", "dtype"}},
      {"batcher",
       {"package_max_workload", "packaging_interval", "pack_across_token_budgets",
        "batch_max_tokens", "batch_max_beams", "preemption_mode"}},
      {"cache",
       {"block_size", "num_gpu_blocks", "gpu_memory_fraction", "num_cpu_blocks", "swap_space_gib",
        "watermark", "enable_prefix_caching"}},
      {"server", {"host", "port", "max_inflight", "payload_limit", "api_key", "grace_seconds"}},
  };
  return keys;
}

nlohmann::json read_config(const std::string& path) {
  if (path.empty()) return nlohmann::json::object();
  std::ifstream in(path);
  if (!in) fail("cannot read the config file '", path, "'");
  nlohmann::json config = nlohmann::json::parse(in, nullptr, false);
  if (config.is_discarded() || !config.is_object())
    fail("the config file '", path, "' is not a JSON object");
  for (const auto& [section, value] : config.items()) {
    const auto known = known_config_keys().find(section);
    if (known == known_config_keys().end())
      fail("config '", path, "': unknown section '", section, "' (model, batcher, cache, server)");
    if (!value.is_object()) fail("config '", path, "': section '", section, "' is not an object");
    for (const auto& [key, unused] : value.items()) {
      if (known->second.count(key) == 0) {
        std::string names;
        for (const std::string& name : known->second) names += (names.empty() ? "" : ", ") + name;
        fail("config '", path, "': unknown key '", section, ".", key, "' (", section,
             " takes: ", names, ")");
      }
    }
  }
  return config;
}

std::string folder_name(const std::string& path) {
  std::string trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  const size_t slash = trimmed.find_last_of('/');
  return slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
}

}  // namespace

int run_serve(const std::vector<std::string>& args) {
  if (asks_for_help(args)) {
    std::cout << kServeHelp;
    return 0;
  }
  Arguments options(args,
                    {"batching",
                     "config",
                     "model",
                     "device",
                     "dtype",
                     "host",
                     "port",
                     "max-inflight",
                     "payload-limit",
                     "api-key",
                     "package-max-workload",
                     "packaging-interval",
                     "grace",
                     "batch-max-tokens",
                     "batch-max-beams",
                     "preemption-mode",
                     "block-size",
                     "num-gpu-blocks",
                     "gpu-memory-fraction",
                     "num-cpu-blocks",
                     "swap-space",
                     "watermark"},
                    {"enable-prefix-caching", "pack-across-token-budgets"});
  const nlohmann::json config = read_config(options.get("config", ""));
  const std::string batching = options.get("batching", "static");
  if (batching != "static" && batching != "continuous")
    fail("--batching must be static or continuous, got '", batching, "'");

  const std::string model_dir =
      options.get("model", config_value<std::string>(config, "model", "path", default_model_dir()));
  BackendChoice choice;
  choice.device =
      options.get("device", config_value<std::string>(config, "model", "device", "auto"));
  choice.dtype = options.get("dtype", config_value<std::string>(config, "model", "dtype", "auto"));
  choice.checkpoint_dtype = ModelConfig::load(model_dir).torch_dtype;

  ServerOptions server_options;
  server_options.host =
      options.get("host", config_value<std::string>(config, "server", "host", "127.0.0.1"));
  server_options.port = static_cast<int>(
      options.get_int("port", config_value<long long>(config, "server", "port", 8000)));
  server_options.max_inflight_requests = options.get_int(
      "max-inflight", config_value<long long>(config, "server", "max_inflight", 64));
  const long long payload_limit = options.get_int(
      "payload-limit", config_value<long long>(config, "server", "payload_limit", 1 << 20));
  server_options.api_key =
      options.get("api-key", config_value<std::string>(config, "server", "api_key", ""));
  const double grace_seconds =
      options.get_double("grace", config_value<double>(config, "server", "grace_seconds", 30.0));
  if (server_options.port < 0 || server_options.port > 65535)
    fail("--port must be in [0, 65535], got ", server_options.port);
  if (server_options.max_inflight_requests < 1)
    fail("--max-inflight must be >= 1, got ", server_options.max_inflight_requests);
  if (payload_limit < 1) fail("--payload-limit must be >= 1, got ", payload_limit);
  if (grace_seconds < 0) fail("--grace must be >= 0, got ", grace_seconds);
  server_options.payload_limit_bytes = static_cast<uint64_t>(payload_limit);

  ContinuousEngineOptions continuous_options;
  ContinuousSchedulerConfig& scheduler = continuous_options.scheduler;
  scheduler.batch_max_tokens = options.get_int(
      "batch-max-tokens", config_value<long long>(config, "batcher", "batch_max_tokens", 4096));
  scheduler.batch_max_beams = options.get_int(
      "batch-max-beams", config_value<long long>(config, "batcher", "batch_max_beams", 256));
  scheduler.preemption_mode = parse_preemption_mode(options.get(
      "preemption-mode", config_value<std::string>(config, "batcher", "preemption_mode", "swap")));
  scheduler.blocks.block_size =
      options.get_int("block-size", config_value<long long>(config, "cache", "block_size", 16));
  scheduler.blocks.watermark =
      options.get_double("watermark", config_value<double>(config, "cache", "watermark", 0.01));
  scheduler.blocks.enable_prefix_caching =
      options.has("enable-prefix-caching") ||
      config_value<bool>(config, "cache", "enable_prefix_caching", false);
  const long long num_gpu_blocks = options.get_int(
      "num-gpu-blocks", config_value<long long>(config, "cache", "num_gpu_blocks", 0));
  const double gpu_memory_fraction = options.get_double(
      "gpu-memory-fraction", config_value<double>(config, "cache", "gpu_memory_fraction", 0.9));
  const long long num_cpu_blocks = options.get_int(
      "num-cpu-blocks", config_value<long long>(config, "cache", "num_cpu_blocks", 0));
  const double swap_space_gib = options.get_double(
      "swap-space", config_value<double>(config, "cache", "swap_space_gib", -1.0));
  if (scheduler.blocks.block_size < 1)
    fail("--block-size must be >= 1, got ", scheduler.blocks.block_size);
  if (num_gpu_blocks < 0 || num_cpu_blocks < 0)
    fail("--num-gpu-blocks and --num-cpu-blocks must be >= 0");
  if (!(gpu_memory_fraction > 0 && gpu_memory_fraction <= 1))
    fail("--gpu-memory-fraction must be in (0, 1], got ", gpu_memory_fraction);
  if (!(scheduler.blocks.watermark >= 0 && scheduler.blocks.watermark < 1))
    fail("--watermark must be in [0, 1), got ", scheduler.blocks.watermark);

  StaticBatcherOptions batcher_options;
  batcher_options.package_max_workload =
      options.get_int("package-max-workload",
                      config_value<long long>(config, "batcher", "package_max_workload", 8));
  batcher_options.packaging_interval_seconds = options.get_double(
      "packaging-interval", config_value<double>(config, "batcher", "packaging_interval", 0.05));
  batcher_options.pack_across_token_budgets =
      options.has("pack-across-token-budgets") ||
      config_value<bool>(config, "batcher", "pack_across_token_budgets", false);

  // The signals are taken by sigwait below, never by a handler: block them before any thread
  // starts so that every thread inherits the mask. A client that goes away must not kill us.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Listen first, so that probes see "loading" (503) rather than a refused connection while a
  // large checkpoint loads; a SIGINT/SIGTERM meanwhile is taken once the model is ready.
  ProtocolLimits limits;
  limits.served_model_name = folder_name(model_dir);
  HttpServer server(server_options);
  server.start();
  std::cout << "servelab serve: listening on http://" << server_options.host << ":"
            << server.bound_port() << " (loading " << model_dir << ")" << std::endl;

  std::unique_ptr<Backend> backend = make_backend(choice);
  LlamaModel model = LlamaModel::load(model_dir, *backend);
  const ModelConfig& model_config = model.config();
  Tokenizer tokenizer = Tokenizer::load(
      model_dir, SpecialTokens{model_config.bos_token_id, model_config.eos_token_ids});
  std::unique_ptr<ServingEngine> engine;
  std::string detail;
  if (batching == "static") {
    engine = std::make_unique<StaticBatcher>(model, tokenizer, batcher_options);
  } else {
    // The KV pools: given in blocks, or sized from memory after the weights are loaded.
    const KvCacheShape shape = kv_cache_shape(model, scheduler.blocks.block_size);
    const bool on_cpu = resolve_device(choice.device) == "cpu";
    scheduler.blocks.num_gpu_blocks =
        num_gpu_blocks > 0 ? num_gpu_blocks
        : on_cpu           ? 2048
                           : gpu_blocks_for_memory_fraction(*backend, shape, gpu_memory_fraction,
                                                            int64_t{1} << 30);
    const double swap_gib = swap_space_gib >= 0 ? swap_space_gib : (on_cpu ? 1.0 : 4.0);
    scheduler.blocks.num_cpu_blocks =
        num_cpu_blocks > 0
            ? num_cpu_blocks
            : static_cast<int64_t>(swap_gib * double(int64_t{1} << 30) / shape.bytes_per_block());
    engine = std::make_unique<ContinuousEngine>(model, tokenizer, continuous_options);
    detail = str_cat(" (", scheduler.blocks.num_gpu_blocks, " KV blocks of ",
                     scheduler.blocks.block_size, " tokens, ", scheduler.blocks.num_cpu_blocks,
                     " swap blocks, preemption by ", to_string(scheduler.preemption_mode), ")");
  }
  engine->start();
  server.attach(ServedModel{engine.get(), &tokenizer, model_config.max_position_embeddings, limits,
                            ChatTemplate::from_model_dir(model_dir)});
  std::cout << "servelab serve: ready: model " << limits.served_model_name << " ("
            << backend->name() << "), " << batching << " batching" << detail << std::endl;

  int received = 0;
  sigwait(&stop_signals, &received);
  std::cout << "servelab serve: " << (received == SIGINT ? "SIGINT" : "SIGTERM")
            << ": draining (up to " << grace_seconds << " s)" << std::endl;
  const auto grace = std::chrono::milliseconds(static_cast<int64_t>(grace_seconds * 1000));
  server.shutdown(grace);
  engine->stop(std::chrono::milliseconds(0));
  std::cout << "servelab serve: stopped" << std::endl;
  return 0;
}

}  // namespace servelab::cli
