// Unit tests of the balancer's configuration file.
#include "client/balancer_config.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace servelab {
namespace {

std::string error_of(const std::string& text) {
  try {
    parse_balancer_config(text, "'test.json'");
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST(BalancerConfig, TheSmallestConfigIsAListOfServers) {
  const BalancerConfig config = parse_balancer_config(
      R"({"servers": ["http://127.0.0.1:8001", "http://localhost:8002/"]})", "'test.json'");
  ASSERT_EQ(config.servers.size(), 2u);
  EXPECT_EQ(config.servers[0].host, "127.0.0.1");
  EXPECT_EQ(config.servers[0].port, 8001);
  EXPECT_EQ(config.servers[1].url, "http://localhost:8002");
  EXPECT_EQ(config.policy, BalancePolicy::kLeastOutstanding);
  EXPECT_EQ(config.retries, 2);
  EXPECT_EQ(config.port, 9000);
}

TEST(BalancerConfig, EverySectionIsRead) {
  const BalancerConfig config = parse_balancer_config(R"({
    "servers": [{"url": "http://10.0.0.1:80", "api_key": "k"}],
    "policy": "least_workload", "retries": 0,
    "health_check": {"interval_seconds": 0.5, "timeout_seconds": 0.2, "failures_to_mark_down": 2,
                     "successes_to_mark_up": 3},
    "server": {"host": "0.0.0.0", "port": 0, "max_inflight": 8, "payload_limit": 1000,
               "read_timeout_seconds": 5, "api_key": "b"}})",
                                                      "'test.json'");
  EXPECT_EQ(config.servers[0].api_key, "k");
  EXPECT_EQ(config.policy, BalancePolicy::kLeastWorkload);
  EXPECT_EQ(config.retries, 0);
  EXPECT_EQ(config.health_interval_seconds, 0.5);
  EXPECT_EQ(config.health.failures_to_mark_down, 2);
  EXPECT_EQ(config.health.successes_to_mark_up, 3);
  EXPECT_EQ(config.host, "0.0.0.0");
  EXPECT_EQ(config.port, 0);
  EXPECT_EQ(config.max_inflight, 8);
  EXPECT_EQ(config.payload_limit_bytes, 1000u);
  EXPECT_EQ(config.api_key, "b");
}

TEST(BalancerConfig, MistakesAreErrorsThatNameThem) {
  EXPECT_NE(error_of("[1]").find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of("{}").find("'servers'"), std::string::npos);
  EXPECT_NE(error_of(R"({"servers": ["https://a:1"]})").find("https is not supported"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"servers": ["http://a"]})").find("http://HOST:PORT"), std::string::npos);
  EXPECT_NE(error_of(R"({"servers": ["http://a:99999"]})").find("port"), std::string::npos);
  EXPECT_NE(error_of(R"({"servers": ["http://a:1", "http://a:1"]})").find("listed twice"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"servers": [], "polcy": "x"})").find("unknown key 'polcy'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"servers": [], "policy": "random"})").find("round_robin"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"servers": [], "retries": "2"})").find("wrong type"), std::string::npos);
  EXPECT_NE(error_of(R"({"servers": [], "health_check": {"interval_seconds": 0}})")
                .find("interval_seconds > 0"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"servers": [{"url": "http://a:1", "weight": 2}]})")
                .find("unknown key 'servers[].weight'"),
            std::string::npos);
}

}  // namespace
}  // namespace servelab
