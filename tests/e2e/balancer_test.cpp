// `servelab balance` in front of three `servelab serve` processes on loopback (embedded model,
// CPU): each policy spreads requests as it should (counted in the balancer's /metrics); a server
// killed mid-run fails only the streams it had started, which end with an error event, is marked
// down and is used again once restarted; a config file edit adds and removes servers without
// failing requests in flight; a stream through the balancer is exactly the server's stream.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "e2e/server_process.h"

namespace servelab {
namespace {

using namespace e2e;
using nlohmann::json;
using std::chrono::milliseconds;

const char* kPrompt = "Tom had a red ball.";

/// A config file in the build tree, rewritten by the tests.
class ConfigFile {
 public:
  explicit ConfigFile(const std::string& name)
      : path_(testing::binary_path("balancer_" + name + ".json")) {}
  ~ConfigFile() { std::remove(path_.c_str()); }
  void write(const json& config) const {
    const std::string temporary = path_ + ".tmp";
    std::ofstream(temporary) << config.dump(1);
    std::rename(temporary.c_str(), path_.c_str());  // the watcher never sees half a file
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

json config_for(const std::vector<std::string>& urls, const std::string& policy) {
  return {{"servers", urls},
          {"policy", policy},
          {"retries", 2},
          {"health_check", {{"interval_seconds", 0.25}, {"timeout_seconds", 0.5}}}};
}

ServerProcess start_balancer(const ConfigFile& file) {
  return ServerProcess(
      ServerProcess::Command{{"balance", "--config", file.path(), "--port", "0"}, ""});
}

/// The balancer's count of requests sent to `server`.
double sent_to(httplib::Client& balancer, const std::string& server) {
  return metric(balancer, "servelab_balancer_requests_total\\{server=\"" + server + "\"\\}");
}

bool wait_until(const std::function<bool()>& condition, milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return condition();
}

json greedy_native(int max_new_tokens, bool stream = false) {
  return {{"prompt", kPrompt},
          {"generation_config", {{"max_new_tokens", max_new_tokens}, {"ignore_eos", true}}},
          {"stream", stream}};
}

class Balancing : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kDevice != std::string("cpu") || !device_usable()) GTEST_SKIP() << "CPU only";
  }
};

TEST_F(Balancing, EachPolicySpreadsRequestsAsItSays) {
  ServerProcess a({}, "continuous"), b({}, "continuous"), c({}, "static");
  const std::vector<std::string> urls = {a.url(), b.url(), c.url()};
  ConfigFile file("policies");

  // Round-robin: 30 requests one after the other, 10 each.
  file.write(config_for(urls, "round_robin"));
  {
    ServerProcess balancer = start_balancer(file);
    httplib::Client client = balancer.client();
    for (int i = 0; i < 30; ++i) {
      int status = 0;
      post_json(client, "/generate", greedy_native(2), &status);
      ASSERT_EQ(status, 200);
    }
    for (const std::string& url : urls) EXPECT_EQ(sent_to(client, url), 10) << url;
  }
  // Least outstanding: while a long request occupies one server, the next ones go elsewhere.
  // Least workload: the same, and a request's size counts.
  for (const std::string policy : {"least_outstanding", "least_workload"}) {
    file.write(config_for(urls, policy));
    ServerProcess balancer = start_balancer(file);
    httplib::Client client = balancer.client();
    auto long_one = std::async(std::launch::async, [&] {
      httplib::Client own = balancer.client();
      int status = 0;
      post_json(own, "/generate", greedy_native(400), &status);
      return status;
    });
    std::string busy;
    ASSERT_TRUE(wait_until(
        [&] {
          for (const std::string& url : urls)
            if (sent_to(client, url) == 1) busy = url;
          return !busy.empty();
        },
        milliseconds(5000)));
    for (int i = 0; i < 8; ++i) {
      int status = 0;
      post_json(client, "/generate", greedy_native(2), &status);
      ASSERT_EQ(status, 200);
    }
    EXPECT_EQ(sent_to(client, busy), 1) << policy << ": the busy server got more requests";
    for (const std::string& url : urls) {
      if (url == busy) continue;
      EXPECT_GE(sent_to(client, url), 2) << policy << ": ties are shared";
    }
    EXPECT_EQ(long_one.get(), 200);
  }
}

TEST_F(Balancing, TheBatchingHeaderPicksThePoolAndAnUnknownModelIs404) {
  ServerProcess a({}, "continuous"), b({}, "static");
  ConfigFile file("pools");
  file.write(config_for({a.url(), b.url()}, "round_robin"));
  ServerProcess balancer = start_balancer(file);
  httplib::Client client = balancer.client();
  for (int i = 0; i < 4; ++i) {
    auto result = client.Post("/generate", {{"X-Servelab-Batching", "static"}},
                              greedy_native(2).dump(), "application/json");
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 200);
  }
  EXPECT_EQ(sent_to(client, b.url()), 4);
  EXPECT_EQ(sent_to(client, a.url()), -1) << "never used: no series";
  auto unknown = client.Post("/v1/completions", json{{"model", "nope"}, {"prompt", "x"}}.dump(),
                             "application/json");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_NE(unknown->body.find("model_not_found"), std::string::npos);
  auto models = client.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "servelab-stories");
}

TEST_F(Balancing, ItsOwnApiKeyAdmissionBoundAndPayloadLimitAnswerAsTheServersDo) {
  ServerProcess server({}, "continuous");
  ConfigFile file("limits");
  json config = config_for({server.url()}, "round_robin");
  config["server"] = {{"api_key", "secret"}, {"max_inflight", 1}, {"payload_limit", 4096}};
  file.write(config);
  ServerProcess balancer = start_balancer(file);
  httplib::Client client = balancer.client();
  const httplib::Headers key = {{"Authorization", "Bearer secret"}};
  auto no_key = client.Post("/generate", greedy_native(2).dump(), "application/json");
  ASSERT_TRUE(no_key);
  EXPECT_EQ(no_key->status, 401);
  auto with_key = client.Post("/generate", key, greedy_native(2).dump(), "application/json");
  ASSERT_TRUE(with_key);
  EXPECT_EQ(with_key->status, 200) << with_key->body;
  auto too_big = client.Post("/generate", key, std::string(8192, ' '), "application/json");
  ASSERT_TRUE(too_big);
  EXPECT_EQ(too_big->status, 413);
  // One long request holds the only admission slot; the next one gets 429 at once.
  auto long_one = std::async(std::launch::async, [&] {
    httplib::Client own = balancer.client();
    auto result = own.Post("/generate", key, greedy_native(400).dump(), "application/json");
    return result ? result->status : -1;
  });
  ASSERT_TRUE(
      wait_until([&] { return metric(client, "servelab_balancer_requests_in_flight") == 1; },
                 milliseconds(5000)));
  auto refused = client.Post("/generate", key, greedy_native(2).dump(), "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429);
  EXPECT_EQ(long_one.get(), 200);
  EXPECT_EQ(client.Get("/health")->status, 200) << "probes need no key";
}

TEST_F(Balancing, AStreamThroughTheBalancerIsExactlyTheServersStream) {
  ServerProcess server({}, "continuous");
  ConfigFile file("passthrough");
  file.write(json{{"servers", {server.url()}}});  // the smallest config there is
  ServerProcess balancer = start_balancer(file);
  auto events = [](const std::string& url) {
    std::vector<std::string> received;
    ServelabClient client(url);
    const ClientAnswer answer = client.post_stream("/generate", greedy_native(24, /*stream=*/true),
                                                   [&](const std::string& data) {
                                                     received.push_back(data);
                                                     return true;
                                                   });
    EXPECT_EQ(answer.status, 200) << answer.body;
    return received;
  };
  const std::vector<std::string> direct = events(server.url());
  const std::vector<std::string> through = events(balancer.url());
  ASSERT_GT(direct.size(), 10u);
  EXPECT_EQ(through, direct);
  EXPECT_EQ(through.back(), "[DONE]");
}

TEST_F(Balancing, AKilledServerFailsOnlyItsStartedStreamsIsMarkedDownAndComesBack) {
  ServerProcess a({}, "continuous"), c({}, "continuous");
  auto b = std::make_unique<ServerProcess>(std::vector<std::string>{}, "continuous");
  const std::string b_url = b->url();
  const std::string b_port = std::to_string(b->port());
  ConfigFile file("failover");
  file.write(config_for({a.url(), b_url, c.url()}, "round_robin"));
  ServerProcess balancer = start_balancer(file);

  const int count = 200;
  std::atomic<int> next{0}, ok{0}, stream_errors{0}, other_failures{0}, finished{0};
  auto worker = [&] {
    while (true) {
      const int i = next++;
      if (i >= count) return;
      const bool stream = i % 2 == 0;
      ServelabClient client(balancer.url());
      if (!stream) {
        const ClientAnswer answer = client.post("/generate", greedy_native(8 + i % 16));
        (answer.status == 200 ? ok : other_failures) += 1;
      } else {
        bool done = false, error = false;
        const ClientAnswer answer = client.post_stream(
            "/generate", greedy_native(8 + i % 16, true), [&](const std::string& data) {
              if (data == "[DONE]") done = true;
              if (data.find("\"error\"") != std::string::npos) error = true;
              return true;
            });
        if (answer.status == 200 && done && !error) {
          ok += 1;
        } else if (answer.status == 200 && done && error) {
          stream_errors += 1;  // started on the killed server: an error event, then [DONE]
        } else {
          other_failures += 1;
        }
      }
      finished += 1;
    }
  };
  std::vector<std::thread> workers;
  for (int w = 0; w < 8; ++w) workers.emplace_back(worker);
  ASSERT_TRUE(wait_until([&] { return finished >= 40; }, milliseconds(120000)));
  b->kill_now();
  const auto killed_at = std::chrono::steady_clock::now();
  httplib::Client client = balancer.client();
  ASSERT_TRUE(wait_until(
      [&] {
        return metric(client, "servelab_balancer_server_up\\{server=\"" + b_url + "\"\\}") == 0;
      },
      milliseconds(5000)));
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, milliseconds(2 * 250 + 400))
      << "marked down within two probe intervals";
  for (std::thread& thread : workers) thread.join();
  EXPECT_EQ(other_failures.load(), 0) << "only streams already started on the server may fail";
  EXPECT_EQ(ok + stream_errors, count);
  EXPECT_LE(stream_errors.load(), 8) << "at most one stream per client was on it when it died";

  // Restart it on the same port: a probe brings it back, and it gets requests again.
  const double before = sent_to(client, b_url);
  b = std::make_unique<ServerProcess>(std::vector<std::string>{"--port", b_port}, "continuous");
  ASSERT_TRUE(wait_until(
      [&] {
        return metric(client, "servelab_balancer_server_up\\{server=\"" + b_url + "\"\\}") == 1;
      },
      milliseconds(5000)));
  for (int i = 0; i < 6; ++i) {
    int status = 0;
    post_json(client, "/generate", greedy_native(2), &status);
    EXPECT_EQ(status, 200);
  }
  EXPECT_GT(sent_to(client, b_url), before);
}

TEST_F(Balancing, EditingTheConfigAddsAServerAndRemovesOneWithoutFailingItsRequests) {
  ServerProcess a({}, "continuous"), b({}, "continuous"), c({}, "static"), d({}, "continuous");
  ConfigFile file("reload");
  file.write(config_for({a.url(), b.url(), c.url()}, "round_robin"));
  ServerProcess balancer = start_balancer(file);
  httplib::Client client = balancer.client();

  // Add d: it takes requests once its first probe passes.
  file.write(config_for({a.url(), b.url(), c.url(), d.url()}, "round_robin"));
  ASSERT_TRUE(
      wait_until([&] { return metric(client, "servelab_balancer_servers\\{state=\"up\"\\}") == 4; },
                 milliseconds(5000)));
  for (int i = 0; i < 8; ++i) {
    int status = 0;
    post_json(client, "/generate", greedy_native(2), &status);
    ASSERT_EQ(status, 200);
  }
  EXPECT_EQ(sent_to(client, d.url()), 2);

  // A long stream on c (the only static server: the batching header sends it there), then c
  // leaves the configuration while the stream runs.
  std::promise<void> started;
  auto stream = std::async(std::launch::async, [&] {
    httplib::Client own = balancer.client();
    httplib::Request request;
    request.method = "POST";
    request.path = "/generate";
    request.body = greedy_native(300, true).dump();
    request.set_header("Content-Type", "application/json");
    request.set_header("X-Servelab-Batching", "static");
    std::string body;
    bool first = true;
    request.content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
      if (first) started.set_value();
      first = false;
      body.append(data, length);
      return true;
    };
    httplib::Response response;
    httplib::Error error = httplib::Error::Success;
    own.send(request, response, error);
    return body.find("data: [DONE]") != std::string::npos &&
           body.find("\"error\"") == std::string::npos;
  });
  started.get_future().wait();
  const double c_before = sent_to(client, c.url());
  file.write(config_for({a.url(), b.url(), d.url()}, "round_robin"));
  ASSERT_TRUE(
      wait_until([&] { return metric(client, "servelab_balancer_servers\\{state=\"up\"\\}") == 3; },
                 milliseconds(5000)));
  for (int i = 0; i < 6; ++i) {
    int status = 0;
    post_json(client, "/generate", greedy_native(2), &status);
    ASSERT_EQ(status, 200);
  }
  EXPECT_EQ(sent_to(client, c.url()), c_before) << "a removed server gets no new request";
  EXPECT_TRUE(stream.get()) << "the request in flight finished whole";
}

}  // namespace
}  // namespace servelab
