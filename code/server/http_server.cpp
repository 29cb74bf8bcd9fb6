#include "server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <httplib.h>

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "protocol/protocol_error.h"
#include "protocol/response.h"
#include "server/listen_backlog.h"

namespace servelab {
namespace {

using Clock = std::chrono::steady_clock;

const char* kJson = "application/json";

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

FinishReason finish_reason_of(const std::string& name) {
  if (name == "stop") return FinishReason::kStop;
  if (name == "length") return FinishReason::kLength;
  return FinishReason::kAbort;
}

// The error an engine's kError event stands for.
ProtocolError engine_error(const OutputEvent& event) {
  if (event.status == 503) return ProtocolError::unavailable(event.error);
  if (event.status >= 500 || event.status < 400) return ProtocolError::internal(event.error);
  return ProtocolError(event.status, "invalid_request_error", event.error);
}

ProtocolError still_loading() {
  return ProtocolError::unavailable("the model is still loading; try again in a few seconds");
}

// Label value for the error counter: the specific code when there is one.
std::string error_label(const ProtocolError& error) {
  return error.code().empty() ? error.type() : error.code();
}

}  // namespace

// One admitted generation request from submission to its last byte. It holds one unit of
// admission and, until the request completes, the right to cancel its channel: whoever drops the
// last reference (the handler, or cpp-httplib destroying a streamed response) frees both.
struct HttpServer::StreamState {
  HttpServer* server = nullptr;
  GenerateRequest request;
  std::shared_ptr<OutputChannel> channel;
  bool tracked = false;
  ResponseIdentity identity;
  int64_t prompt_tokens = 0;
  std::vector<CompletionChoice> choices;
  std::vector<bool> finished;
  std::vector<int64_t> tokens_per_choice;
  int64_t finished_count = 0;
  int64_t completion_tokens = 0;
  std::optional<OutputEvent> error;
  Clock::time_point arrival = Clock::now();
  std::optional<Clock::time_point> first_token;
  bool stream_opened = false;
  bool complete = false;  // answered in full (or with the engine's error)

  explicit StreamState(HttpServer* owner) : server(owner) {}
  ~StreamState() {
    if (channel != nullptr) {
      if (!complete) channel->cancel();  // the engine drops it within one step
      if (tracked) server->untrack(channel);
    }
    server->release_admission();
  }

  bool all_finished() const { return finished_count == static_cast<int64_t>(choices.size()); }

  /// Folds one event into the totals. A malformed event (bad index, a choice finished twice) is an
  /// engine bug; it becomes a 500 instead of out-of-bounds writes.
  void apply(const OutputEvent& event) {
    if (event.kind == OutputEvent::Kind::kError) {
      error = event;
      return;
    }
    if (event.index < 0 || event.index >= static_cast<int>(choices.size()) ||
        finished[event.index]) {
      OutputEvent bad;
      bad.kind = OutputEvent::Kind::kError;
      bad.status = 500;
      bad.error = str_cat("the engine sent an event for choice ", event.index,
                          " which is not an open choice of this request");
      error = bad;
      return;
    }
    if (event.kind == OutputEvent::Kind::kText) {
      if (!first_token) {
        first_token = Clock::now();
        server->metrics_.observe("servelab_time_to_first_token_seconds",
                                 seconds_between(arrival, *first_token));
      }
      if (!request.stream) choices[event.index].text += event.text;
      return;
    }
    finished[event.index] = true;
    ++finished_count;
    choices[event.index].finish_reason = finish_reason_of(event.finish_reason);
    tokens_per_choice[event.index] = event.completion_tokens;
    completion_tokens += event.completion_tokens;
  }

  Usage usage() const { return Usage{prompt_tokens, completion_tokens}; }

  /// Records the outcome of a request that ran to its end.
  void record_success() {
    MetricsRegistry& metrics = server->metrics_;
    const Clock::time_point now = Clock::now();
    metrics.observe("servelab_e2e_request_latency_seconds", seconds_between(arrival, now));
    metrics.increment("servelab_generation_tokens_total", {},
                      static_cast<double>(completion_tokens));
    const int64_t longest = *std::max_element(tokens_per_choice.begin(), tokens_per_choice.end());
    if (first_token && longest > 1) {
      metrics.observe("servelab_time_per_output_token_seconds",
                      seconds_between(*first_token, now) / static_cast<double>(longest - 1));
    }
    for (const CompletionChoice& choice : choices) {
      metrics.increment("servelab_request_success_total",
                        {{"finish_reason", to_string(choice.finish_reason)}});
    }
  }
};

HttpServer::HttpServer(ServingEngine& engine, const Tokenizer& tokenizer, int64_t context_length,
                       ProtocolLimits limits, ChatTemplate chat_template, ServerOptions options)
    : HttpServer(std::move(options)) {
  attach(ServedModel{&engine, &tokenizer, context_length, std::move(limits),
                     std::move(chat_template)});
}

void HttpServer::attach(ServedModel model) {
  if (model.engine == nullptr || model.tokenizer == nullptr) {
    fail("HttpServer::attach: the engine and the tokenizer must not be null");
  }
  if (ready()) fail("HttpServer::attach() may be called only once");
  model_ = std::move(model);
  ready_.store(true, std::memory_order_release);
}

HttpServer::HttpServer(ServerOptions options)
    : options_(std::move(options)), server_(std::make_unique<httplib::Server>()) {
  if (options_.max_inflight_requests < 1) {
    fail("server option max_inflight_requests must be >= 1, got ", options_.max_inflight_requests);
  }
  started_unix_seconds_ = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  register_metrics();
  register_routes();
}

HttpServer::~HttpServer() {
  shutdown(std::chrono::milliseconds(0));
}

void HttpServer::register_metrics() {
  metrics_.add_gauge("servelab_requests_running", "Requests in the batch the engine is running.");
  metrics_.add_gauge("servelab_requests_waiting", "Requests queued in the engine.");
  metrics_.add_gauge("servelab_requests_swapped", "Requests preempted to the CPU block pool.");
  metrics_.add_gauge("servelab_kv_cache_usage_ratio", "Fraction of KV cache memory in use.");
  metrics_.add_gauge("servelab_kv_blocks",
                     "KV cache blocks by pool (gpu, cpu) and state (free, total); paged engines.");
  metrics_.add_counter("servelab_preemptions_total",
                       "Requests preempted for lack of KV blocks, by mode (swap, recompute).");
  metrics_.add_gauge("servelab_http_requests_in_flight",
                     "Generation requests admitted by the HTTP layer and not yet answered.");
  metrics_.add_counter("servelab_prompt_tokens_total", "Prompt tokens of submitted requests.");
  metrics_.add_counter("servelab_generation_tokens_total", "Tokens generated (all choices).");
  const std::vector<double> latency_buckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                               1,     2.5,  5,     10,   30,  60};
  metrics_.add_histogram("servelab_time_to_first_token_seconds",
                         "Time from arrival to the first generated text.", latency_buckets);
  metrics_.add_histogram("servelab_time_per_output_token_seconds",
                         "Decode time per token after the first (longest choice).",
                         {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1});
  metrics_.add_histogram("servelab_e2e_request_latency_seconds",
                         "Time from arrival to the end of the answer.", latency_buckets);
  metrics_.add_counter("servelab_request_success_total",
                       "Finished sequences (one per choice) by finish reason.");
  metrics_.add_counter("servelab_request_errors_total",
                       "Requests answered with an error, by HTTP status and error type.");
}

void HttpServer::register_routes() {
  httplib::Server& server = *server_;
  const std::pair<const char*, ApiKind> generation_routes[] = {
      {"/generate", ApiKind::kNative},
      {"/v1/completions", ApiKind::kCompletions},
      {"/v1/chat/completions", ApiKind::kChatCompletions}};
  for (const auto& [path, api] : generation_routes) {
    const ApiKind kind = api;
    server.Post(path, [this, kind](const httplib::Request& request, httplib::Response& response) {
      handle_generate(kind, request, response);
    });
  }
  server.Get("/v1/models", [this](const httplib::Request& request, httplib::Response& response) {
    if (shutting_down_) return answer_error(ProtocolError::unavailable("shutting down"), response);
    if (!authorized(request)) return answer_error(ProtocolError::unauthorized(), response);
    if (!ready()) return answer_error(still_loading(), response);
    response.set_content(to_json_text(model_list(
                             {ModelCard{model_.limits.served_model_name, started_unix_seconds_}})),
                         kJson);
  });
  // {"status": "ok" | "loading" | "shutting_down", "model": ..., "batching": ...}: 200 only when
  // ok, so that a probe needs only the status code; the rest tells a balancer what it talks to.
  server.Get("/health", [this](const httplib::Request&, httplib::Response& response) {
    nlohmann::json health = nlohmann::json::object();
    const bool ready_now = ready();
    health["status"] = shutting_down_ ? "shutting_down" : ready_now ? "ok" : "loading";
    if (ready_now) {
      health["model"] = model_.limits.served_model_name;
      health["batching"] = model_.engine->batching();
    }
    response.status = health["status"] == "ok" ? 200 : 503;
    response.set_content(health.dump(), kJson);
  });
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    try {
      response.set_content(render_metrics(), "text/plain; version=0.0.4; charset=utf-8");
    } catch (const std::exception& error) {
      answer_error(ProtocolError::internal(error.what()), response);
    }
  });

  // cpp-httplib answers unknown routes (404) and over-long bodies (413) itself, with an empty
  // body; give those the JSON error object every other error has.
  server.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& request, httplib::Response& response) {
        if (!response.body.empty()) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        if (response.status == 404) {
          answer_error(ProtocolError::route_not_found(request.method, request.path), response);
        } else if (response.status == 413) {
          answer_error(ProtocolError::payload_too_large(options_.payload_limit_bytes), response);
        } else {
          answer_error(
              ProtocolError(response.status, "invalid_request_error",
                            str_cat("The request could not be read (HTTP ", response.status, ")")),
              response);
        }
        return httplib::Server::HandlerResponse::Handled;
      }));
  // A last net: handlers catch everything themselves, but an exception must never reach a pool
  // thread's top.
  server.set_exception_handler(
      [this](const httplib::Request&, httplib::Response& response, std::exception_ptr thrown) {
        std::string message = "unknown exception";
        try {
          std::rethrow_exception(thrown);
        } catch (const std::exception& error) {
          message = error.what();
        } catch (...) {
        }
        answer_error(ProtocolError::internal(message), response);
      });

  const size_t threads =
      static_cast<size_t>(options_.max_inflight_requests) + std::max(options_.extra_threads, 1);
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server.set_payload_max_length(options_.payload_limit_bytes);
  server.set_read_timeout(options_.read_timeout);
  server.set_write_timeout(options_.write_timeout);
}

void HttpServer::start() {
  if (listen_thread_.joinable() || stopped_) fail("HttpServer::start() may be called only once");
  if (options_.port == 0) {
    bound_port_ = server_->bind_to_any_port(options_.host);
  } else if (server_->bind_to_port(options_.host, options_.port)) {
    bound_port_ = options_.port;
  }
  if (bound_port_ <= 0) {
    bound_port_ = -1;
    fail("cannot listen on ", options_.host, ":", options_.port,
         " (is the port in use, or the host not an address of this machine?)");
  }
  widen_listen_backlog(bound_port_);
  listen_thread_ = std::thread([this] { server_->listen_after_bind(); });
}

void HttpServer::shutdown(std::chrono::milliseconds grace) {
  if (stopped_.exchange(true)) return;
  shutting_down_ = true;
  {
    std::unique_lock<std::mutex> lock(inflight_mutex_);
    inflight_changed_.wait_for(lock, grace, [&] { return inflight_.load() == 0; });
    // Past the grace period: cancel what is left; each waiting handler sees it within one poll.
    cancel_all_ = true;
    for (const auto& channel : inflight_channels_) channel->cancel();
    inflight_changed_.wait_for(lock, options_.stream_poll_interval * 4 + std::chrono::seconds(1),
                               [&] { return inflight_.load() == 0; });
  }
  server_->stop();
  if (listen_thread_.joinable()) listen_thread_.join();
}

bool HttpServer::try_admit() {
  if (inflight_.fetch_add(1) >= options_.max_inflight_requests) {
    release_admission();
    return false;
  }
  return true;
}

void HttpServer::release_admission() {
  {
    std::lock_guard<std::mutex> lock(inflight_mutex_);
    inflight_.fetch_sub(1);
  }
  inflight_changed_.notify_all();
}

void HttpServer::track(const std::shared_ptr<OutputChannel>& channel) {
  std::lock_guard<std::mutex> lock(inflight_mutex_);
  inflight_channels_.insert(channel);
  if (cancel_all_) channel->cancel();  // admitted just as shutdown's grace ran out
}

void HttpServer::untrack(const std::shared_ptr<OutputChannel>& channel) {
  std::lock_guard<std::mutex> lock(inflight_mutex_);
  inflight_channels_.erase(channel);
}

bool HttpServer::authorized(const httplib::Request& request) const {
  if (options_.api_key.empty()) return true;
  return request.get_header_value("Authorization") == "Bearer " + options_.api_key;
}

void HttpServer::answer_error(const ProtocolError& error, httplib::Response& response) {
  metrics_.increment("servelab_request_errors_total",
                     {{"status", std::to_string(error.status())}, {"type", error_label(error)}});
  response.status = error.status();
  response.set_content(to_json_text(error_body(error)), kJson);
}

std::string HttpServer::render_metrics() {
  const EngineGauges gauges = ready() ? model_.engine->gauges() : EngineGauges{};
  metrics_.set_gauge("servelab_requests_running", static_cast<double>(gauges.running));
  metrics_.set_gauge("servelab_requests_waiting", static_cast<double>(gauges.waiting));
  metrics_.set_gauge("servelab_requests_swapped", static_cast<double>(gauges.swapped));
  metrics_.set_gauge("servelab_kv_cache_usage_ratio", gauges.kv_usage);
  metrics_.set_gauge("servelab_kv_blocks", static_cast<double>(gauges.kv_blocks_total),
                     {{"pool", "gpu"}, {"state", "total"}});
  metrics_.set_gauge("servelab_kv_blocks", static_cast<double>(gauges.kv_blocks_free),
                     {{"pool", "gpu"}, {"state", "free"}});
  metrics_.set_gauge("servelab_kv_blocks", static_cast<double>(gauges.cpu_blocks_total),
                     {{"pool", "cpu"}, {"state", "total"}});
  metrics_.set_gauge("servelab_kv_blocks", static_cast<double>(gauges.cpu_blocks_free),
                     {{"pool", "cpu"}, {"state", "free"}});
  metrics_.set_counter("servelab_preemptions_total", static_cast<double>(gauges.preemptions_swap),
                       {{"mode", "swap"}});
  metrics_.set_counter("servelab_preemptions_total",
                       static_cast<double>(gauges.preemptions_recompute), {{"mode", "recompute"}});
  metrics_.set_gauge("servelab_http_requests_in_flight", static_cast<double>(inflight_.load()));
  return metrics_.render();
}

void HttpServer::handle_generate(ApiKind api, const httplib::Request& http_request,
                                 httplib::Response& response) {
  try {
    if (shutting_down_) throw ProtocolError::unavailable("the server is shutting down");
    if (!ready()) throw still_loading();
    if (!authorized(http_request)) throw ProtocolError::unauthorized();
    // Admission before any parsing, so an overloaded server spends nothing on what it refuses.
    if (!try_admit()) throw ProtocolError::overloaded(options_.max_inflight_requests);
    auto state = std::make_shared<StreamState>(this);  // owns the admission from here on

    state->request =
        parse_generate_request(api, http_request.body, model_.limits, model_.chat_template);
    const GenerateRequest& request = state->request;
    std::vector<int32_t> prompt_tokens = model_.tokenizer->encode(request.prompt);
    check_context_length(model_.context_length, static_cast<int64_t>(prompt_tokens.size()),
                         request.config.max_new_tokens, request.max_tokens_param());

    const size_t choice_count = static_cast<size_t>(request.config.num_return_sequences);
    state->choices.resize(choice_count);
    for (size_t i = 0; i < choice_count; ++i) state->choices[i].index = static_cast<int64_t>(i);
    state->finished.assign(choice_count, false);
    state->tokens_per_choice.assign(choice_count, 0);
    state->prompt_tokens = static_cast<int64_t>(prompt_tokens.size());
    const uint64_t id = next_request_id_.fetch_add(1);
    state->identity.id = make_response_id(api == ApiKind::kChatCompletions, id);
    state->identity.created = std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
    state->identity.model = request.model;

    ServingRequest serving;
    serving.id = static_cast<int64_t>(id);
    serving.prompt_tokens = std::move(prompt_tokens);
    serving.config = request.config;
    serving.arrival = state->arrival;
    state->channel = serving.output;
    track(state->channel);
    state->tracked = true;
    metrics_.increment("servelab_prompt_tokens_total", {},
                       static_cast<double>(state->prompt_tokens));
    model_.engine->submit(std::move(serving));

    if (request.stream) {
      answer_streaming(std::move(state), response);
    } else {
      answer_whole(*state, response);
    }
  } catch (const ProtocolError& error) {
    answer_error(error, response);
  } catch (const std::exception& error) {
    answer_error(ProtocolError::internal(error.what()), response);
  }
}

void HttpServer::answer_whole(StreamState& state, httplib::Response& response) {
  while (!state.all_finished() && !state.error) {
    std::optional<OutputEvent> event = state.channel->receive(options_.stream_poll_interval);
    if (event) {
      state.apply(*event);
    } else if (state.channel->cancelled()) {
      throw ProtocolError::unavailable("the server shut down before the request finished");
    }
  }
  state.complete = true;
  if (state.error) throw engine_error(*state.error);
  const GenerateRequest& request = state.request;
  const bool aborted = std::any_of(state.choices.begin(), state.choices.end(), [](const auto& c) {
    return c.finish_reason == FinishReason::kAbort;
  });
  // OpenAI's responses have no "abort": an aborted OpenAI request gets an error instead.
  if (aborted && request.api != ApiKind::kNative) {
    throw ProtocolError::unavailable("the request was aborted before it finished");
  }
  state.record_success();
  nlohmann::json body;
  switch (request.api) {
    case ApiKind::kNative:
      body = native_response(state.choices, state.usage());
      break;
    case ApiKind::kCompletions:
      body = completion_response(state.identity, state.choices, state.usage());
      break;
    case ApiKind::kChatCompletions:
      body = chat_completion_response(state.identity, state.choices, state.usage());
      break;
  }
  response.set_content(to_json_text(body), kJson);
}

void HttpServer::answer_streaming(std::shared_ptr<StreamState> state, httplib::Response& response) {
  const std::chrono::milliseconds poll = options_.stream_poll_interval;
  // Called by cpp-httplib on this pool thread until it returns false or calls sink.done(). Each
  // call blocks until one event arrives and writes it; a failed write means the client left.
  auto provider = [state, poll](size_t /*offset*/, httplib::DataSink& sink) -> bool {
    StreamState& s = *state;
    const GenerateRequest& request = s.request;
    const bool chat = request.api == ApiKind::kChatCompletions;
    auto write = [&](const std::string& text) {
      if (sink.write(text.data(), text.size())) return true;
      s.channel->cancel();
      s.server->metrics_.increment("servelab_request_errors_total",
                                   {{"status", "499"}, {"type", "client_closed_request"}});
      return false;
    };
    try {
      if (!s.stream_opened) {
        s.stream_opened = true;
        if (chat) {
          for (size_t i = 0; i < s.choices.size(); ++i) {
            if (!write(sse_event(
                    chat_role_chunk(s.identity, static_cast<int64_t>(i), request.include_usage)))) {
              return false;
            }
          }
        }
      }
      while (true) {
        std::optional<OutputEvent> event = s.channel->receive(poll);
        if (!event) {
          if (s.channel->cancelled()) return false;  // shutdown cancelled it
          continue;
        }
        s.apply(*event);
        if (s.error) {
          s.complete = true;
          const ProtocolError error = engine_error(*s.error);
          s.server->metrics_.increment(
              "servelab_request_errors_total",
              {{"status", std::to_string(error.status())}, {"type", error_label(error)}});
          // The status is out already: the error is one more event, then the usual end.
          if (!write(sse_event(error_body(error))) || !write(sse_done())) return false;
          sink.done();
          return true;
        }
        const int64_t index = event->index;
        if (event->kind == OutputEvent::Kind::kText) {
          if (event->text.empty()) continue;
          nlohmann::json chunk;
          if (request.api == ApiKind::kNative) {
            chunk = native_chunk(index, event->text);
          } else if (chat) {
            chunk = chat_content_chunk(s.identity, index, event->text, request.include_usage);
          } else {
            chunk = completion_chunk(s.identity, index, event->text, std::nullopt,
                                     request.include_usage);
          }
          return write(sse_event(chunk));
        }
        // kFinished
        const FinishReason reason = s.choices[index].finish_reason;
        nlohmann::json chunk;
        if (request.api == ApiKind::kNative) {
          chunk = native_chunk(index, "", reason);
        } else if (chat) {
          chunk = chat_finish_chunk(s.identity, index, reason, request.include_usage);
        } else {
          chunk = completion_chunk(s.identity, index, "", reason, request.include_usage);
        }
        if (!write(sse_event(chunk))) return false;
        if (!s.all_finished()) return true;
        s.complete = true;
        s.record_success();
        if (request.api == ApiKind::kNative) {
          if (!write(sse_event(native_usage_chunk(s.usage())))) return false;
        } else if (request.include_usage) {
          if (!write(sse_event(usage_chunk(s.identity, chat, s.usage())))) return false;
        }
        if (!write(sse_done())) return false;
        sink.done();
        return true;
      }
    } catch (const std::exception&) {
      // Nothing sensible can be written mid-stream; end it and let the engine drop the request.
      s.channel->cancel();
      return false;
    }
  };
  response.set_header("Cache-Control", "no-cache");
  response.set_chunked_content_provider("text/event-stream", std::move(provider));
}

}  // namespace servelab
