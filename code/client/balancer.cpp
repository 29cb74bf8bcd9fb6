// The client load balancer (see balancer.h).
#include "client/balancer.h"

#include <sys/stat.h>

#include <httplib.h>

#include <algorithm>
#include <cstdio>
#include <future>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/channel.h"
#include "common/error.h"
#include "protocol/protocol_error.h"
#include "protocol/response.h"
#include "server/listen_backlog.h"

namespace servelab {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

const char* kJson = "application/json";

/// The servers' error object (protocol/response.h) for the balancer's own errors.
nlohmann::json error_json(int status, const std::string& message, const std::string& code) {
  return error_body(ProtocolError(status, status >= 500 ? "server_error" : "invalid_request_error",
                                  message, "", code));
}

void answer_error(httplib::Response& response, int status, const std::string& message,
                  const std::string& code) {
  response.status = status;
  response.set_content(to_json_text(error_json(status, message, code)), kJson);
}

/// What routing needs from a request body: its model, whether it streams, and its cost estimate.
struct RoutingInfo {
  std::string model;
  bool stream = false;
  RequestEstimate estimate;
};

std::string text_of(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  std::string text;
  if (value.is_array())
    for (const json& item : value) text += text_of(item);
  if (value.is_object() && value.contains("content")) text += text_of(value["content"]);
  return text;
}

RoutingInfo routing_info(const json& body) {
  RoutingInfo info;
  if (body.contains("model") && body["model"].is_string()) info.model = body["model"];
  info.stream =
      body.contains("stream") && body["stream"].is_boolean() && body["stream"].get<bool>();
  std::string prompt;
  if (body.contains("prompt")) prompt = text_of(body["prompt"]);
  if (body.contains("messages")) prompt = text_of(body["messages"]);
  info.estimate.prompt_tokens = estimate_prompt_tokens(prompt);
  auto integer = [](const json& object, const char* key) -> std::optional<int64_t> {
    if (object.is_object() && object.contains(key) && object[key].is_number_integer())
      return object[key].get<int64_t>();
    return std::nullopt;
  };
  const json config = body.contains("generation_config") ? body["generation_config"] : json();
  int64_t sequences = 1;
  for (const auto& value :
       {integer(body, "n"), integer(config, "num_return_sequences"), integer(config, "num_beams")})
    if (value) sequences = std::max(sequences, *value);
  info.estimate.sequences = sequences;
  if (auto value = integer(body, "max_tokens")) info.estimate.max_new_tokens = *value;
  if (auto value = integer(body, "max_completion_tokens")) info.estimate.max_new_tokens = *value;
  if (auto value = integer(config, "max_new_tokens")) info.estimate.max_new_tokens = *value;
  return info;
}

/// A piece of an upstream answer, on its way from the upstream thread to the client's handler.
struct Piece {
  std::string data;
  bool end = false;     ///< the upstream answer is over
  bool failed = false;  ///< ... because the connection failed (with `end`)
};

}  // namespace

/// One server.
struct Balancer::Backend {
  explicit Backend(ServerEntry entry_in, HealthRules rules)
      : entry(std::move(entry_in)), health(rules) {}
  ServerEntry entry;
  mutable std::mutex mutex;  // guards health, model, batching
  ServerHealth health;
  std::string model, batching;
  std::atomic<int64_t> outstanding{0}, workload{0}, requests{0};
  std::atomic<bool> removed{false};

  bool up() const {
    std::lock_guard<std::mutex> lock(mutex);
    return health.up();
  }
};

/// One try of a request on one server, streamed: the upstream thread fills `pieces`.
struct Balancer::Attempt {
  std::shared_ptr<Backend> backend;
  int64_t workload = 0;
  std::promise<int> status;  ///< the server's HTTP status, or -1 when it could not be reached
  Channel<Piece> pieces;
  ~Attempt() {
    backend->outstanding -= 1;
    backend->workload -= workload;
  }
};

Balancer::Balancer(BalancerConfig config, std::string config_path)
    : config_(std::move(config)),
      config_path_(std::move(config_path)),
      server_(std::make_unique<httplib::Server>()) {
  for (const ServerEntry& entry : config_.servers)
    backends_.push_back(std::make_shared<Backend>(entry, config_.health));
  metrics_.add_counter("servelab_balancer_requests_total",
                       "Requests sent to each server (retries included), by server.");
  metrics_.add_counter("servelab_balancer_retries_total",
                       "Requests tried again on another server after a failure before any byte "
                       "reached the client.");
  metrics_.add_counter("servelab_balancer_request_errors_total",
                       "Requests the balancer answered with an error, by status.");
  metrics_.add_counter("servelab_balancer_stream_failures_total",
                       "Streams cut because their server failed after the stream had started.");
  metrics_.add_gauge("servelab_balancer_server_up", "1 when the server is up, by server.");
  metrics_.add_gauge("servelab_balancer_server_outstanding",
                     "Requests in flight on each server, by server.");
  metrics_.add_gauge("servelab_balancer_servers", "Servers by state (up, down).");
  metrics_.add_gauge("servelab_balancer_requests_in_flight", "Requests admitted and not answered.");
  metrics_.add_histogram("servelab_balancer_request_latency_seconds",
                         "Time from a request's arrival to the end of its answer.",
                         {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60});
  register_routes();
}

Balancer::~Balancer() {
  shutdown(std::chrono::milliseconds(0));
}

void Balancer::register_routes() {
  httplib::Server& server = *server_;
  for (const char* path : {"/generate", "/v1/completions", "/v1/chat/completions"}) {
    const std::string route = path;
    server.Post(path, [this, route](const httplib::Request& request, httplib::Response& response) {
      handle_generate(route, request, response);
    });
  }
  server.Get("/health", [this](const httplib::Request&, httplib::Response& response) {
    json servers = json::array();
    int64_t up = 0;
    for (const ServerStatus& status : this->servers()) {
      up += status.up && !status.removed ? 1 : 0;
      servers.push_back({{"url", status.url},
                         {"up", status.up},
                         {"model", status.model},
                         {"batching", status.batching},
                         {"outstanding", status.outstanding}});
    }
    const bool ok = up > 0 && !stopping_;
    response.status = ok ? 200 : 503;
    response.set_content(json{{"status", stopping_ ? "shutting_down"
                                         : ok      ? "ok"
                                                   : "no_server_up"},
                              {"servers_up", up},
                              {"servers", servers}}
                             .dump(),
                         kJson);
  });
  server.Get("/v1/models", [this](const httplib::Request& request, httplib::Response& response) {
    if (!config_.api_key.empty() &&
        request.get_header_value("Authorization") != "Bearer " + config_.api_key)
      return answer_error(response, 401, "Missing or wrong API key", "invalid_api_key");
    std::vector<std::string> models;
    for (const ServerStatus& status : servers())
      if (status.up && !status.removed &&
          std::find(models.begin(), models.end(), status.model) == models.end())
        models.push_back(status.model);
    json data = json::array();
    for (const std::string& model : models)
      data.push_back({{"id", model}, {"object", "model"}, {"owned_by", "servelab"}});
    response.set_content(json{{"object", "list"}, {"data", data}}.dump(), kJson);
  });
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(render_metrics(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& request, httplib::Response& response) {
        if (!response.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        if (response.status == 404)
          answer_error(response, 404, "No route " + request.method + " " + request.path,
                       "route_not_found");
        else if (response.status == 413)
          answer_error(response, 413,
                       "The request body is over this balancer's limit of " +
                           std::to_string(config_.payload_limit_bytes) + " bytes",
                       "payload_too_large");
        return httplib::Server::HandlerResponse::Handled;
      }));
  const size_t threads = static_cast<size_t>(config_.max_inflight) + 8;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server.set_payload_max_length(config_.payload_limit_bytes);
  server.set_read_timeout(std::chrono::seconds(30));
  server.set_write_timeout(std::chrono::seconds(30));
}

void Balancer::start() {
  if (config_.port == 0) {
    bound_port_ = server_->bind_to_any_port(config_.host);
  } else if (server_->bind_to_port(config_.host, config_.port)) {
    bound_port_ = config_.port;
  }
  if (bound_port_ <= 0) {
    bound_port_ = -1;
    fail("the balancer cannot listen on ", config_.host, ":", config_.port,
         " (is the port in use?)");
  }
  widen_listen_backlog(bound_port_);
  std::vector<std::shared_ptr<Backend>> backends;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    backends = backends_;
  }
  for (const auto& backend : backends) probe(*backend);  // so that it routes from the start
  listen_thread_ = std::thread([this] { server_->listen_after_bind(); });
  probe_thread_ = std::thread([this] { probe_loop(); });
  if (!config_path_.empty()) watch_thread_ = std::thread([this] { watch_loop(); });
}

void Balancer::shutdown(std::chrono::milliseconds grace) {
  if (stopping_.exchange(true)) return;
  const auto deadline = Clock::now() + grace;
  while (inflight_.load() > 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  wake_.notify_all();
  server_->stop();
  for (std::thread* thread : {&listen_thread_, &probe_thread_, &watch_thread_})
    if (thread->joinable()) thread->join();
}

std::vector<ServerStatus> Balancer::servers() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<ServerStatus> result;
  for (const auto& backend : backends_) {
    ServerStatus status;
    status.url = backend->entry.url;
    {
      std::lock_guard<std::mutex> backend_lock(backend->mutex);
      status.up = backend->health.up();
      status.model = backend->model;
      status.batching = backend->batching;
    }
    status.removed = backend->removed;
    status.outstanding = backend->outstanding;
    status.workload = backend->workload;
    status.requests = backend->requests;
    result.push_back(status);
  }
  return result;
}

void Balancer::probe(Backend& backend) {
  double timeout = 1.0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    timeout = config_.health_timeout_seconds;
  }
  httplib::Client client(backend.entry.host, backend.entry.port);
  const auto timeout_us = std::chrono::microseconds(static_cast<int64_t>(timeout * 1e6));
  client.set_connection_timeout(timeout_us);
  client.set_read_timeout(timeout_us);
  auto result = client.Get("/health");
  bool ok = false;
  std::string model, batching;
  if (result && result->status == 200) {
    const json health = json::parse(result->body, nullptr, false);
    if (health.is_object() && health.value("status", "") == "ok") {
      ok = true;
      model = health.value("model", "");
      batching = health.value("batching", "");
    }
  }
  if (ok && model.empty()) {  // a server that does not say its model in /health
    auto models = client.Get("/v1/models");
    const json list = models ? json::parse(models->body, nullptr, false) : json();
    if (list.is_object() && list.contains("data") && !list["data"].empty())
      model = list["data"][0].value("id", "");
  }
  std::lock_guard<std::mutex> lock(backend.mutex);
  if (ok) {
    backend.health.probe_succeeded();
    backend.model = model;
    backend.batching = batching;
  } else {
    backend.health.probe_failed();
  }
}

void Balancer::probe_loop() {
  while (!stopping_) {
    std::vector<std::shared_ptr<Backend>> backends;
    double interval = 1.0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // Removed servers leave the list once their last request has ended.
      backends_.erase(
          std::remove_if(backends_.begin(), backends_.end(),
                         [](const auto& b) { return b->removed && b->outstanding == 0; }),
          backends_.end());
      backends = backends_;
      interval = config_.health_interval_seconds;
    }
    for (const auto& backend : backends)
      if (!backend->removed && !stopping_) probe(*backend);
    std::unique_lock<std::mutex> lock(wake_mutex_);
    wake_.wait_for(lock, std::chrono::microseconds(static_cast<int64_t>(interval * 1e6)),
                   [&] { return stopping_.load() || probe_now_.exchange(false); });
  }
}

void Balancer::watch_loop() {
  auto modified = [&]() -> int64_t {
    struct stat info {};
    if (stat(config_path_.c_str(), &info) != 0) return -1;
    return static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 + info.st_mtim.tv_nsec;
  };
  // Read the file once more after taking its time stamp: an edit made between the first load and
  // the stamp would otherwise go unnoticed until the next one.
  int64_t last = modified();
  reload();
  while (!stopping_) {
    {
      std::unique_lock<std::mutex> lock(wake_mutex_);
      wake_.wait_for(lock, std::chrono::milliseconds(250), [&] { return stopping_.load(); });
    }
    const int64_t now = modified();
    if (now != last && now != -1) {
      last = now;
      reload();
    }
  }
}

void Balancer::reload() {
  if (config_path_.empty()) return;
  try {
    apply(load_balancer_config(config_path_));
  } catch (const Error& error) {
    std::fprintf(stderr, "servelab balance: reload: %s (the configuration is unchanged)\n",
                 error.what());
  }
}

void Balancer::apply(const BalancerConfig& config) {
  std::lock_guard<std::mutex> lock(mutex_);
  int added = 0, removed = 0;
  for (const ServerEntry& entry : config.servers) {
    const bool known = std::any_of(backends_.begin(), backends_.end(), [&](const auto& b) {
      return b->entry.url == entry.url && !b->removed;
    });
    if (!known) {
      backends_.push_back(std::make_shared<Backend>(entry, config.health));
      added += 1;
    }
  }
  for (const auto& backend : backends_) {
    const bool listed =
        std::any_of(config.servers.begin(), config.servers.end(),
                    [&](const ServerEntry& e) { return e.url == backend->entry.url; });
    if (!listed && !backend->removed) {
      backend->removed = true;
      removed += 1;
    }
  }
  const bool changed = added > 0 || removed > 0 || config_.policy != config.policy ||
                       config_.retries != config.retries ||
                       config_.health_interval_seconds != config.health_interval_seconds;
  // What can change without a restart; the listening address and admission bound cannot.
  config_.servers = config.servers;
  config_.policy = config.policy;
  config_.retries = config.retries;
  config_.health_interval_seconds = config.health_interval_seconds;
  config_.health_timeout_seconds = config.health_timeout_seconds;
  config_.health = config.health;
  if (!changed) return;
  std::fprintf(stderr, "servelab balance: reloaded %s: %d server(s) added, %d removed, policy %s\n",
               config_path_.c_str(), added, removed, to_string(config_.policy));
  probe_now_ = true;
  wake_.notify_all();
}

std::shared_ptr<Balancer::Backend> Balancer::pick(
    const std::string& model, const std::string& pool,
    const std::vector<std::shared_ptr<Backend>>& tried, int64_t workload) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<ServerLoad> loads;
  std::vector<size_t> candidates;
  for (size_t i = 0; i < backends_.size(); ++i) {
    const Backend& backend = *backends_[i];
    loads.push_back({backend.outstanding.load(), backend.workload.load()});
    if (backend.removed) continue;
    if (std::find(tried.begin(), tried.end(), backends_[i]) != tried.end()) continue;
    std::lock_guard<std::mutex> backend_lock(backend.mutex);
    if (!backend.health.up()) continue;
    if (!model.empty() && backend.model != model) continue;
    if (!pool.empty() && backend.batching != pool) continue;
    candidates.push_back(i);
  }
  if (candidates.empty()) return nullptr;
  const size_t chosen = choose_server(config_.policy, loads, candidates, turn_++);
  std::shared_ptr<Backend> backend = backends_[chosen];
  backend->outstanding += 1;
  backend->workload += workload;
  backend->requests += 1;
  return backend;
}

bool Balancer::any_server_serves(const std::string& model) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& backend : backends_) {
    std::lock_guard<std::mutex> backend_lock(backend->mutex);
    if (!backend->removed && (model.empty() || backend->model == model)) return true;
  }
  return false;
}

void Balancer::handle_generate(const std::string& path, const httplib::Request& request,
                               httplib::Response& response) {
  const auto arrival = Clock::now();
  auto count_error = [&](int status) {
    metrics_.increment("servelab_balancer_request_errors_total",
                       {{"status", std::to_string(status)}});
  };
  if (stopping_) {
    count_error(503);
    return answer_error(response, 503, "The balancer is shutting down", "service_unavailable");
  }
  if (!config_.api_key.empty() &&
      request.get_header_value("Authorization") != "Bearer " + config_.api_key) {
    count_error(401);
    return answer_error(response, 401, "Missing or wrong API key", "invalid_api_key");
  }
  // Admission: one unit per request until its answer is over (the stream's end for streams).
  if (inflight_.fetch_add(1) >= config_.max_inflight) {
    inflight_ -= 1;
    count_error(429);
    return answer_error(response, 429,
                        "The balancer is overloaded: " + std::to_string(config_.max_inflight) +
                            " requests are in flight; retry later",
                        "server_overloaded");
  }
  auto admission = std::shared_ptr<void>(nullptr, [this, arrival](void*) {
    inflight_ -= 1;
    metrics_.observe("servelab_balancer_request_latency_seconds",
                     std::chrono::duration<double>(Clock::now() - arrival).count());
  });

  const json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    count_error(400);
    return answer_error(response, 400, "The request body is not a JSON object", "invalid_json");
  }
  const RoutingInfo info = routing_info(body);
  const std::string pool = request.get_header_value("X-Servelab-Batching");
  int64_t retries = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    retries = config_.retries;
  }
  const auto read_timeout =
      std::chrono::microseconds(static_cast<int64_t>(config_.read_timeout_seconds * 1e6));

  std::vector<std::shared_ptr<Backend>> tried;
  std::string last_failure = "no server is up";
  for (int64_t attempt_number = 0; attempt_number <= retries; ++attempt_number) {
    std::shared_ptr<Backend> backend = pick(info.model, pool, tried, info.estimate.workload());
    if (!backend) break;
    tried.push_back(backend);
    if (attempt_number > 0) metrics_.increment("servelab_balancer_retries_total");
    metrics_.increment("servelab_balancer_requests_total", {{"server", backend->entry.url}});

    // The upstream request runs on its own thread, which hands the answer over piece by piece:
    // the status first, then every chunk as it arrives.
    auto attempt = std::make_shared<Attempt>();
    attempt->backend = backend;
    attempt->workload = info.estimate.workload();
    std::future<int> status_future = attempt->status.get_future();
    std::thread([attempt, path, request_body = request.body, read_timeout,
                 headers = request.headers] {
      const ServerEntry& entry = attempt->backend->entry;
      httplib::Client client(entry.host, entry.port);
      client.set_connection_timeout(std::chrono::seconds(3));
      client.set_read_timeout(read_timeout);
      httplib::Request upstream;
      upstream.method = "POST";
      upstream.path = path;
      upstream.body = request_body;
      upstream.set_header("Content-Type", "application/json");
      if (!entry.api_key.empty()) upstream.set_header("Authorization", "Bearer " + entry.api_key);
      bool status_sent = false;
      upstream.response_handler = [&](const httplib::Response& answer) {
        attempt->status.set_value(answer.status);
        status_sent = true;
        return true;
      };
      upstream.content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
        if (attempt->pieces.cancelled()) return false;  // the client left: close the upstream
        attempt->pieces.send(Piece{std::string(data, length)});
        return true;
      };
      httplib::Response answer;
      httplib::Error error = httplib::Error::Success;
      const bool ok = client.send(upstream, answer, error);
      if (!status_sent) attempt->status.set_value(-1);
      attempt->pieces.send(Piece{"", true, !ok && !attempt->pieces.cancelled()});
    }).detach();

    const int status = status_future.wait_for(read_timeout) == std::future_status::ready
                           ? status_future.get()
                           : -2;
    if (status == -1 || status == -2 || status == 503) {
      // Nothing reached the client yet: try another server. A connection failure is proof that
      // the server is down until a probe says otherwise.
      attempt->pieces.cancel();
      if (status != 503) {
        std::lock_guard<std::mutex> lock(backend->mutex);
        backend->health.request_failed();
      }
      last_failure = status == 503  ? backend->entry.url + " answered 503"
                     : status == -1 ? "cannot reach " + backend->entry.url
                                    : backend->entry.url + " did not answer in time";
      continue;
    }
    const std::string content_type = info.stream && status == 200 ? "text/event-stream" : kJson;
    if (!(info.stream && status == 200)) {
      // A whole answer (or an error the server chose): pass it on as it is.
      std::string whole;
      while (true) {
        std::optional<Piece> piece = attempt->pieces.receive(std::chrono::milliseconds(1000));
        if (!piece) {
          if (Clock::now() - arrival > read_timeout) break;
          continue;
        }
        if (piece->end) {
          if (piece->failed) {
            std::lock_guard<std::mutex> lock(backend->mutex);
            backend->health.request_failed();
          }
          break;
        }
        whole += piece->data;
      }
      response.status = status;
      response.set_content(whole, content_type);
      if (status >= 400) count_error(status);
      return;
    }
    // A stream: from now on the client has the 200 and no retry is possible.
    response.status = 200;
    response.set_header("Cache-Control", "no-cache");
    response.set_chunked_content_provider(
        content_type,
        [this, attempt, admission](size_t, httplib::DataSink& sink) {
          while (true) {
            std::optional<Piece> piece = attempt->pieces.receive(std::chrono::milliseconds(100));
            if (!piece) {
              if (stopping_) return false;
              continue;
            }
            if (piece->end) {
              if (piece->failed) {
                // The server went away mid-stream: say so in the stream, then end it.
                metrics_.increment("servelab_balancer_stream_failures_total");
                {
                  std::lock_guard<std::mutex> lock(attempt->backend->mutex);
                  attempt->backend->health.request_failed();
                }
                const std::string event =
                    sse_event(error_json(502,
                                         "The server " + attempt->backend->entry.url +
                                             " failed while streaming this answer",
                                         "upstream_failed")) +
                    sse_done();
                sink.write(event.data(), event.size());
              }
              sink.done();
              return true;
            }
            if (!sink.write(piece->data.data(), piece->data.size())) {
              attempt->pieces.cancel();  // the client left: the upstream closes, the server aborts
              return false;
            }
          }
        },
        [attempt](bool) { attempt->pieces.cancel(); });
    return;
  }
  // No server could take it.
  if (tried.empty() && !any_server_serves(info.model)) {
    count_error(404);
    return answer_error(response, 404,
                        "No server serves the model '" + info.model + "'" +
                            (pool.empty() ? "" : " with " + pool + " batching"),
                        "model_not_found");
  }
  count_error(503);
  answer_error(response, 503,
               "No server could take the request (" + last_failure + "); retry later",
               "service_unavailable");
}

std::string Balancer::render_metrics() {
  int64_t up = 0, down = 0;
  for (const ServerStatus& status : servers()) {
    if (status.removed) continue;
    (status.up ? up : down) += 1;
    metrics_.set_gauge("servelab_balancer_server_up", status.up ? 1 : 0, {{"server", status.url}});
    metrics_.set_gauge("servelab_balancer_server_outstanding",
                       static_cast<double>(status.outstanding), {{"server", status.url}});
  }
  metrics_.set_gauge("servelab_balancer_servers", static_cast<double>(up), {{"state", "up"}});
  metrics_.set_gauge("servelab_balancer_servers", static_cast<double>(down), {{"state", "down"}});
  metrics_.set_gauge("servelab_balancer_requests_in_flight", static_cast<double>(inflight_.load()));
  return metrics_.render();
}

}  // namespace servelab
