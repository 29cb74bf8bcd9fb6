// The HTTP layer shared by both servers (cpp-httplib): routes, streaming over server-sent events,
// admission control, API key, /health and /metrics. Worker threads parse, tokenize and validate,
// submit to the ServingEngine and wait on the request's channel. It never makes a scheduling
// decision and never blocks the engine thread on a socket.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "protocol/chat_template.h"
#include "protocol/protocol_error.h"
#include "protocol/protocol_limits.h"
#include "protocol/request.h"
#include "scheduler/serving.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace servelab {

/// How the HTTP server listens and what it admits.
struct ServerOptions {
  std::string host = "127.0.0.1";  ///< loopback by default: exposing it is a decision
  int port = 8000;                 ///< 0: pick a free port (see HttpServer::bound_port())
  /// Generation requests in the system at once (waiting or running); past it: 429 at once.
  int64_t max_inflight_requests = 64;
  /// Largest request body in bytes; past it: 413.
  uint64_t payload_limit_bytes = 1 << 20;
  std::chrono::milliseconds read_timeout{30000};
  std::chrono::milliseconds write_timeout{30000};
  /// When not empty, generation and model routes need "Authorization: Bearer <api_key>" (401
  /// otherwise). /health and /metrics stay open for probes and scrapers.
  std::string api_key;
  /// Pool threads beyond max_inflight_requests: each open connection holds one thread in
  /// cpp-httplib 0.11, so these answer /health, /metrics and the 429s while the pool is busy.
  int extra_threads = 4;
  /// How often a waiting handler wakes to notice shutdown when no event comes.
  std::chrono::milliseconds stream_poll_interval{50};
};

/// What a server serves: its engine and the model's tokenizer, context and names.
struct ServedModel {
  ServingEngine* engine = nullptr;
  const Tokenizer* tokenizer = nullptr;
  int64_t context_length = 0;  ///< the model's maximum tokens (prompt + new) per sequence
  ProtocolLimits limits;
  ChatTemplate chat_template;
};

/// One HTTP server in front of one ServingEngine. start() once, shutdown() once (the destructor
/// shuts down with no grace if needed). The engine and tokenizer must outlive this object.
///
/// A server may listen before its model is loaded: construct it with the options alone, start()
/// it, and attach() the model when it is ready. Until then /health answers 503 with status
/// "loading" and generation and model routes answer 503 "still loading" (so that load balancers
/// and users can tell a loading server from a dead one).
class HttpServer {
 public:
  /// A server for a model that is ready.
  /// @param context_length the model's maximum tokens (prompt + new) per sequence.
  HttpServer(ServingEngine& engine, const Tokenizer& tokenizer, int64_t context_length,
             ProtocolLimits limits, ChatTemplate chat_template, ServerOptions options);
  /// A server whose model is still loading: attach() it later.
  explicit HttpServer(ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds (throws servelab::Error naming host and port when it cannot) and listens on a
  /// background thread; bound_port() is valid when this returns. Does not start the engine.
  void start();
  /// Serves `model` from now on (once; engine and tokenizer must not be null); thread-safe with
  /// the handlers. Does not start the engine.
  void attach(ServedModel model);
  /// Whether a model is attached (false while loading).
  bool ready() const { return ready_.load(std::memory_order_acquire); }

  /// The port bound by start() (the chosen one when options.port was 0); -1 before start().
  int bound_port() const { return bound_port_; }

  /// Stops admitting (new requests get 503, /health answers 503), waits up to `grace` for the
  /// generation requests in flight, cancels those still running (their channels: the engine drops
  /// them), then stops the listener and joins its threads. Safe from any thread but a handler's;
  /// a second call does nothing. Does not stop the engine: the caller does, afterwards.
  void shutdown(std::chrono::milliseconds grace);
  bool shutting_down() const { return shutting_down_.load(); }

  /// Generation requests admitted and not yet answered (streams until their last write).
  int64_t inflight_requests() const { return inflight_.load(); }
  const MetricsRegistry& metrics() const { return metrics_; }

 private:
  struct StreamState;
  friend struct StreamState;

  void register_routes();
  void register_metrics();
  void handle_generate(ApiKind api, const httplib::Request& request, httplib::Response& response);
  void answer_streaming(std::shared_ptr<StreamState> state, httplib::Response& response);
  void answer_whole(StreamState& state, httplib::Response& response);
  void answer_error(const ProtocolError& error, httplib::Response& response);
  bool authorized(const httplib::Request& request) const;
  std::string render_metrics();

  // Admission bookkeeping: every admitted request holds one unit until it is answered.
  bool try_admit();
  void release_admission();
  void track(const std::shared_ptr<OutputChannel>& channel);
  void untrack(const std::shared_ptr<OutputChannel>& channel);

  // Written once by attach() before ready_ is set (release); read by handlers after they see
  // ready_ (acquire).
  ServedModel model_;
  std::atomic<bool> ready_{false};
  ServerOptions options_;
  int64_t started_unix_seconds_ = 0;

  std::unique_ptr<httplib::Server> server_;
  std::thread listen_thread_;
  int bound_port_ = -1;
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<int64_t> inflight_{0};
  std::atomic<uint64_t> next_request_id_{1};

  std::mutex inflight_mutex_;
  std::condition_variable inflight_changed_;
  std::set<std::shared_ptr<OutputChannel>> inflight_channels_;
  bool cancel_all_ = false;  // guarded by inflight_mutex_

  MetricsRegistry metrics_;
};

}  // namespace servelab
