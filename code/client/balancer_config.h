// The load balancer's configuration file (client_config.json), parsed and checked. The smallest
// file is {"servers": ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]}: each server's model and
// batching kind are learned from its /health. No sockets here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/balancer_policy.h"

namespace servelab {

/// One server of the configuration.
struct ServerEntry {
  std::string url;      ///< "http://host:port" (http only)
  std::string host;     ///< from the URL
  int port = 0;         ///< from the URL
  std::string api_key;  ///< sent as "Authorization: Bearer ..." when the server wants one
};

struct BalancerConfig {
  std::vector<ServerEntry> servers;
  BalancePolicy policy = BalancePolicy::kLeastOutstanding;
  double health_interval_seconds = 1.0;  ///< how often each server's /health is probed
  double health_timeout_seconds = 1.0;   ///< a probe slower than this failed
  HealthRules health;
  /// A request that fails before any byte reached the client (connection refused or reset, a
  /// 503) is tried again on another server, at most this many times.
  int64_t retries = 2;
  // The balancer's own HTTP side, as the servers'.
  std::string host = "127.0.0.1";
  int port = 9000;
  int64_t max_inflight = 512;
  uint64_t payload_limit_bytes = 1 << 20;
  double read_timeout_seconds = 600;  ///< waiting for a server's answer (or its next chunk)
  std::string api_key;
};

/// Parses the JSON text of a configuration; `origin` names it in errors (the file's path).
/// Throws servelab::Error naming the key and what was expected.
BalancerConfig parse_balancer_config(const std::string& json_text, const std::string& origin);
/// Reads and parses a configuration file.
BalancerConfig load_balancer_config(const std::string& path);
/// "http://host:port[/]" -> host and port; throws servelab::Error otherwise.
ServerEntry parse_server_url(const std::string& url);

}  // namespace servelab
