// The client load balancer: one HTTP endpoint in front of several servelab servers, speaking their
// API (native and OpenAI routes, streaming passed through chunk by chunk). It routes each request
// to a server that serves the request's model (and pool: static or continuous batching) with a
// policy from balancer_policy.h, probes every server's /health, retries a request that failed
// before any byte reached the client on another server, and re-reads its configuration when the
// file changes. It never parses more of a request than routing needs, and never runs a model.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/balancer_config.h"
#include "client/balancer_policy.h"
#include "server/metrics.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace servelab {

/// What the balancer knows of one server now (for /health, tests and the docs).
struct ServerStatus {
  std::string url;
  bool up = false;
  bool removed = false;  ///< dropped from the configuration; kept until its requests end
  std::string model, batching;
  int64_t outstanding = 0, workload = 0;
  int64_t requests = 0;  ///< requests sent to it (retries included)
};

class Balancer {
 public:
  /// @param config_path the file `config` came from: re-read when it changes (and on reload());
  ///        empty for none.
  Balancer(BalancerConfig config, std::string config_path);
  ~Balancer();
  Balancer(const Balancer&) = delete;
  Balancer& operator=(const Balancer&) = delete;

  /// Binds (throws servelab::Error naming host and port when it cannot), probes every server once,
  /// and starts the listener, the health prober and the config watcher.
  void start();
  int bound_port() const { return bound_port_; }
  /// Re-reads the config file now: adds new servers (they take requests once a probe passes) and
  /// removes the ones no longer listed (no new requests; those in flight finish). A file that
  /// does not parse is reported on stderr and changes nothing.
  void reload();
  /// Stops admitting (503), waits up to `grace` for requests in flight, then stops everything.
  void shutdown(std::chrono::milliseconds grace);

  std::vector<ServerStatus> servers() const;
  const MetricsRegistry& metrics() const { return metrics_; }

 private:
  struct Backend;
  struct Attempt;

  void register_routes();
  void handle_generate(const std::string& path, const httplib::Request& request,
                       httplib::Response& response);
  void probe_loop();
  void probe(Backend& backend);
  void watch_loop();
  void apply(const BalancerConfig& config);
  /// The next server for a request, or null: up, serving `model` (any when empty) and `pool`
  /// (any when empty), not in `tried`. Counts the request on it.
  std::shared_ptr<Backend> pick(const std::string& model, const std::string& pool,
                                const std::vector<std::shared_ptr<Backend>>& tried,
                                int64_t workload);
  bool any_server_serves(const std::string& model) const;
  std::string render_metrics();

  mutable std::mutex mutex_;  // guards config_ and backends_
  BalancerConfig config_;
  std::string config_path_;
  std::vector<std::shared_ptr<Backend>> backends_;
  std::atomic<uint64_t> turn_{0};

  std::unique_ptr<httplib::Server> server_;
  std::thread listen_thread_, probe_thread_, watch_thread_;
  int bound_port_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> probe_now_{false};
  std::mutex wake_mutex_;
  std::condition_variable wake_;
  std::atomic<int64_t> inflight_{0};
  MetricsRegistry metrics_;
};

}  // namespace servelab
