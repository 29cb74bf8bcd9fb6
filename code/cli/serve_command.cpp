// `servelab serve`: one model behind the HTTP API, with static batching (continuous batching
// comes with the scheduler of issue 7). Settings come from a JSON config file and/or flags (flags
// win); it prints where it listens, serves until SIGINT or SIGTERM, then drains and exits 0.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "backend/backend_factory.h"
#include "cli/arguments.h"
#include "cli/commands.h"
#include "common/error.h"
#include "model/llama_model.h"
#include "protocol/chat_template.h"
#include "scheduler/static_batcher.h"
#include "server/http_server.h"
#include "tokenizer/tokenizer.h"

namespace servelab::cli {
namespace {

const char* kServeHelp = R"(usage: servelab serve [options]

Serves a model over HTTP: POST /generate (native), /v1/completions and /v1/chat/completions
(OpenAI-compatible, streaming with "stream": true), GET /v1/models, /health and /metrics.
Stops on SIGINT or SIGTERM: new requests get 503, running ones finish (up to --grace seconds).

options:
  --batching static|continuous   the scheduler (default: static; continuous is not built yet)
  --config FILE            a JSON file with "model", "batcher" and "server" sections
                           (sb_server_config.json; see docs/static-batching.md); flags win
  --model DIR              Hugging Face model folder (default: the embedded model)
  --device cpu|cuda        where to run (default: cpu)
  --dtype D                auto, float32, bfloat16 or float16 (as for generate)
  --host H                 address to listen on (default: 127.0.0.1)
  --port N                 port (default: 8000; 0 picks a free one)
  --max-inflight N         requests in the system at once; past it 429 (default: 64)
  --payload-limit BYTES    largest request body; past it 413 (default: 1048576)
  --api-key KEY            require "Authorization: Bearer KEY" (default: none)
  --package-max-workload N sequences per package (default: 8)
  --packaging-interval S   seconds between packings while a package runs (default: 0.05)
  --grace S                seconds running requests get to finish at shutdown (default: 30)
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

nlohmann::json read_config(const std::string& path) {
  if (path.empty()) return nlohmann::json::object();
  std::ifstream in(path);
  if (!in) fail("cannot read the config file '", path, "'");
  nlohmann::json config = nlohmann::json::parse(in, nullptr, false);
  if (config.is_discarded() || !config.is_object())
    fail("the config file '", path, "' is not a JSON object");
  for (const auto& [section, value] : config.items()) {
    if (section != "model" && section != "batcher" && section != "server")
      fail("config '", path, "': unknown section '", section, "' (model, batcher, server)");
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
  for (const auto& arg : args) {
    if (arg == "--help" || arg == "-h") {
      std::cout << kServeHelp;
      return 0;
    }
  }
  Arguments options(
      args,
      {"batching", "config", "model", "device", "dtype", "host", "port", "max-inflight",
       "payload-limit", "api-key", "package-max-workload", "packaging-interval", "grace"},
      {});
  const nlohmann::json config = read_config(options.get("config", ""));
  const std::string batching = options.get("batching", "static");
  if (batching == "continuous")
    fail(
        "--batching continuous is not built yet (the continuous batcher is the next issue); use "
        "--batching static");
  if (batching != "static") fail("--batching must be static or continuous, got '", batching, "'");

  const std::string model_dir =
      options.get("model", config_value<std::string>(config, "model", "path", default_model_dir()));
  BackendChoice choice;
  choice.device =
      options.get("device", config_value<std::string>(config, "model", "device", "cpu"));
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

  StaticBatcherOptions batcher_options;
  batcher_options.package_max_workload =
      options.get_int("package-max-workload",
                      config_value<long long>(config, "batcher", "package_max_workload", 8));
  batcher_options.packaging_interval_seconds = options.get_double(
      "packaging-interval", config_value<double>(config, "batcher", "packaging_interval", 0.05));

  // The signals are taken by sigwait below, never by a handler: block them before any thread
  // starts so that every thread inherits the mask. A client that goes away must not kill us.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<Backend> backend = make_backend(choice);
  LlamaModel model = LlamaModel::load(model_dir, *backend);
  const ModelConfig& model_config = model.config();
  Tokenizer tokenizer = Tokenizer::load(
      model_dir, SpecialTokens{model_config.bos_token_id, model_config.eos_token_ids});
  ProtocolLimits limits;
  limits.served_model_name = folder_name(model_dir);

  StaticBatcher batcher(model, tokenizer, batcher_options);
  batcher.start();
  HttpServer server(batcher, tokenizer, model_config.max_position_embeddings, limits,
                    ChatTemplate::from_model_dir(model_dir), server_options);
  server.start();
  std::cout << "servelab serve: model " << limits.served_model_name << " (" << backend->name()
            << "), static batching, listening on http://" << server_options.host << ":"
            << server.bound_port() << std::endl;

  int received = 0;
  sigwait(&stop_signals, &received);
  std::cout << "servelab serve: " << (received == SIGINT ? "SIGINT" : "SIGTERM")
            << ": draining (up to " << grace_seconds << " s)" << std::endl;
  const auto grace = std::chrono::milliseconds(static_cast<int64_t>(grace_seconds * 1000));
  server.shutdown(grace);
  batcher.stop(std::chrono::milliseconds(0));
  std::cout << "servelab serve: stopped" << std::endl;
  return 0;
}

}  // namespace servelab::cli
