// The load balancer's configuration file (see balancer_config.h).
#include "client/balancer_config.h"

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace servelab {
namespace {

using nlohmann::json;

const std::map<std::string, std::set<std::string>>& known_keys() {
  static const std::map<std::string, std::set<std::string>> keys = {
      {"", {"servers", "policy", "health_check", "retries", "server"}},
      {"health_check",
       {"interval_seconds", "timeout_seconds", "failures_to_mark_down", "successes_to_mark_up"}},
      {"server",
       {"host", "port", "max_inflight", "payload_limit", "read_timeout_seconds", "api_key"}},
      {"servers[]", {"url", "api_key"}},
  };
  return keys;
}

void refuse_unknown(const json& object, const std::string& section, const std::string& origin) {
  const std::set<std::string>& known = known_keys().at(section);
  for (const auto& [key, unused] : object.items()) {
    if (known.count(key) != 0) continue;
    std::string names;
    for (const std::string& name : known) names += (names.empty() ? "" : ", ") + name;
    fail("balancer config ", origin, ": unknown key '", section.empty() ? "" : section + ".", key,
         "' (", section.empty() ? "the top level" : section, " takes: ", names, ")");
  }
}

template <typename T>
T value_of(const json& object, const char* key, T fallback, const std::string& where,
           const std::string& origin) {
  if (!object.contains(key)) return fallback;
  try {
    return object.at(key).get<T>();
  } catch (const json::exception&) {
    fail("balancer config ", origin, ": '", where, key, "' has the wrong type (",
         object.at(key).dump(), ")");
  }
}

}  // namespace

ServerEntry parse_server_url(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0)
    fail("server URL '", url, "' must start with http:// (https is not supported)");
  std::string rest = url.substr(scheme.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || rest.find('/') != std::string::npos)
    fail("server URL '", url, "' must be http://HOST:PORT");
  ServerEntry entry;
  entry.url = scheme + rest;
  entry.host = rest.substr(0, colon);
  try {
    size_t used = 0;
    entry.port = std::stoi(rest.substr(colon + 1), &used);
    if (used != rest.size() - colon - 1) throw std::invalid_argument("trailing characters");
  } catch (const std::exception&) {
    fail("server URL '", url, "': the port is not a number");
  }
  if (entry.port < 1 || entry.port > 65535) fail("server URL '", url, "': port out of range");
  return entry;
}

BalancerConfig parse_balancer_config(const std::string& json_text, const std::string& origin) {
  const json root = json::parse(json_text, nullptr, false);
  if (root.is_discarded() || !root.is_object())
    fail("balancer config ", origin, " is not a JSON object");
  refuse_unknown(root, "", origin);
  BalancerConfig config;
  if (!root.contains("servers") || !root["servers"].is_array())
    fail("balancer config ", origin, ": 'servers' must be a list of URLs (or {\"url\": ...})");
  std::set<std::string> seen;
  for (const json& item : root["servers"]) {
    ServerEntry entry;
    if (item.is_string()) {
      entry = parse_server_url(item.get<std::string>());
    } else if (item.is_object()) {
      refuse_unknown(item, "servers[]", origin);
      entry = parse_server_url(value_of<std::string>(item, "url", "", "servers[].", origin));
      entry.api_key = value_of<std::string>(item, "api_key", "", "servers[].", origin);
    } else {
      fail("balancer config ", origin, ": each server is a URL string or {\"url\": ...}, got ",
           item.dump());
    }
    if (!seen.insert(entry.url).second)
      fail("balancer config ", origin, ": server ", entry.url, " is listed twice");
    config.servers.push_back(entry);
  }
  config.policy = parse_balance_policy(
      value_of<std::string>(root, "policy", to_string(config.policy), "", origin));
  config.retries = value_of<int64_t>(root, "retries", config.retries, "", origin);
  if (config.retries < 0) fail("balancer config ", origin, ": 'retries' must be >= 0");
  if (root.contains("health_check")) {
    const json& health = root["health_check"];
    if (!health.is_object()) fail("balancer config ", origin, ": 'health_check' is not an object");
    refuse_unknown(health, "health_check", origin);
    config.health_interval_seconds = value_of<double>(
        health, "interval_seconds", config.health_interval_seconds, "health_check.", origin);
    config.health_timeout_seconds = value_of<double>(
        health, "timeout_seconds", config.health_timeout_seconds, "health_check.", origin);
    config.health.failures_to_mark_down =
        value_of<int>(health, "failures_to_mark_down", config.health.failures_to_mark_down,
                      "health_check.", origin);
    config.health.successes_to_mark_up =
        value_of<int>(health, "successes_to_mark_up", config.health.successes_to_mark_up,
                      "health_check.", origin);
  }
  if (!(config.health_interval_seconds > 0) || !(config.health_timeout_seconds > 0) ||
      config.health.failures_to_mark_down < 1 || config.health.successes_to_mark_up < 1)
    fail("balancer config ", origin,
         ": health_check needs interval_seconds > 0, timeout_seconds > 0, failures_to_mark_down "
         ">= 1 and successes_to_mark_up >= 1");
  if (root.contains("server")) {
    const json& server = root["server"];
    if (!server.is_object()) fail("balancer config ", origin, ": 'server' is not an object");
    refuse_unknown(server, "server", origin);
    config.host = value_of<std::string>(server, "host", config.host, "server.", origin);
    config.port = value_of<int>(server, "port", config.port, "server.", origin);
    config.max_inflight =
        value_of<int64_t>(server, "max_inflight", config.max_inflight, "server.", origin);
    config.payload_limit_bytes =
        value_of<uint64_t>(server, "payload_limit", config.payload_limit_bytes, "server.", origin);
    config.read_timeout_seconds = value_of<double>(server, "read_timeout_seconds",
                                                   config.read_timeout_seconds, "server.", origin);
    config.api_key = value_of<std::string>(server, "api_key", config.api_key, "server.", origin);
  }
  if (config.port < 0 || config.port > 65535 || config.max_inflight < 1)
    fail("balancer config ", origin, ": server.port must be in [0, 65535] and max_inflight >= 1");
  return config;
}

BalancerConfig load_balancer_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot read the balancer config '", path, "'");
  std::stringstream text;
  text << in.rdbuf();
  return parse_balancer_config(text.str(), "'" + path + "'");
}

}  // namespace servelab
