// `servelab serve` (static batching, and the tests both servers share) run as a user runs it: a
// separate process on 127.0.0.1, spoken to over HTTP by cpp-httplib's client. Greedy answers must
// equal `servelab generate`'s whatever the route, streaming or not and whatever else is in the
// batch; bad input must get the right status and never take the server down; overload gets 429; a
// client that leaves mid-stream leaves nothing running; SIGTERM drains and exits 0.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "e2e/server_process.h"

namespace servelab {
namespace {

using namespace e2e;
using nlohmann::json;

class StaticServer : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!device_usable()) GTEST_SKIP() << "servelab generate --device " << kDevice << " fails here";
  }
};

/// The tests both servers must pass alike; the parameter is --batching.
class Server : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!device_usable()) GTEST_SKIP() << "servelab generate --device " << kDevice << " fails here";
  }
};

const char* kPrompt = "Once upon a time, there was a little fox who lived in the forest.";

TEST_P(Server, NativeAndOpenAiRoutesStreamingOrNotGiveGenerateAlonesGreedyText) {
  ServerProcess server({}, GetParam());
  httplib::Client client = server.client();
  const std::string expected = generate_alone(kPrompt, 24);

  int status = 0;
  json native =
      post_json(client, "/generate",
                {{"prompt", kPrompt}, {"generation_config", {{"max_new_tokens", 24}}}}, &status);
  ASSERT_EQ(status, 200) << native.dump();
  EXPECT_EQ(native["choices"][0]["text"], expected);
  const int prompt_tokens = native["usage"]["prompt_tokens"];
  EXPECT_GT(prompt_tokens, 5);
  EXPECT_EQ(native["usage"]["total_tokens"],
            prompt_tokens + native["usage"]["completion_tokens"].get<int>());

  json completion = post_json(
      client, "/v1/completions",
      {{"model", "servelab-stories"}, {"prompt", kPrompt}, {"max_tokens", 24}, {"temperature", 0}},
      &status);
  ASSERT_EQ(status, 200) << completion.dump();
  EXPECT_EQ(completion["choices"][0]["text"], expected);
  EXPECT_EQ(completion["object"], "text_completion");
  EXPECT_EQ(completion["usage"]["prompt_tokens"], prompt_tokens);

  StreamResult streamed = post_stream(client, "/v1/completions",
                                      {{"model", "servelab-stories"},
                                       {"prompt", kPrompt},
                                       {"max_tokens", 24},
                                       {"temperature", 0},
                                       {"stream", true},
                                       {"stream_options", {{"include_usage", true}}}});
  EXPECT_TRUE(streamed.done);
  EXPECT_EQ(streamed.text, expected);
  EXPECT_EQ(streamed.usage["completion_tokens"], completion["usage"]["completion_tokens"]);

  StreamResult native_streamed = post_stream(
      client, "/generate",
      {{"prompt", kPrompt}, {"generation_config", {{"max_new_tokens", 24}}}, {"stream", true}});
  EXPECT_TRUE(native_streamed.done);
  EXPECT_EQ(native_streamed.text, expected);
}

TEST_F(StaticServer, ThirtyTwoConcurrentRequestsOfMixedConfigsEachEqualTheirAnswerAlone) {
  ServerProcess server({"--package-max-workload", "16"});
  const std::vector<std::string> prompts = {"Tom had a red ball.", "The cat sat on the mat.",
                                            "One day, a girl named Lily",
                                            "Ben and Mia wanted to build a boat."};
  std::vector<std::future<std::pair<int, json>>> answers;
  for (int i = 0; i < 32; ++i) {
    answers.push_back(std::async(std::launch::async, [&, i] {
      httplib::Client client = server.client();
      const json body = {{"prompt", prompts[i % 4]},
                         {"generation_config", {{"max_new_tokens", 8 + (i % 3) * 8}}}};
      int status = 0;
      json answer = post_json(client, "/generate", body, &status);
      return std::make_pair(status, answer);
    }));
  }
  for (int i = 0; i < 32; ++i) {
    auto [status, answer] = answers[i].get();
    ASSERT_EQ(status, 200) << answer.dump();
    EXPECT_EQ(answer["choices"][0]["text"], generate_alone(prompts[i % 4], 8 + (i % 3) * 8))
        << "request " << i;
  }
}

TEST_P(Server, BadInputGetsTheRightStatusAndTheServerStaysUp) {
  // The example config file (sb_server_config.json or cb_server_config.json at the top of the
  // tree), with its port and model path overridden by flags as a user would.
  const std::string config_file =
      GetParam() == "static" ? "sb_server_config.json" : "cb_server_config.json";
  ServerProcess server({"--config", testing::source_path(config_file), "--model",
                        testing::source_path("models/servelab-stories")},
                       GetParam());
  httplib::Client client = server.client();
  struct Case {
    std::string path, body;
    int status;
  };
  const std::string huge(10 * 1024 * 1024, 'a');
  const std::vector<Case> cases = {
      {"/generate", "{not json", 400},
      {"/generate", R"({"prompt": 42})", 400},
      {"/generate", R"({"prompt": "hi", "generation_config": {"max_new_tokens": 1e300}})", 400},
      {"/generate", R"({"prompt": "hi", "generation_config": {"temperature": -1}})", 400},
      {"/generate", R"({"prompt": ""})", 400},
      {"/v1/completions", R"({"model": "gpt-4", "prompt": "hi"})", 404},
      {"/v1/nothing", "{}", 404},
      {"/generate", "{\"prompt\": \"" + huge + "\"}", 413},
      {"/generate", std::string("{\"prompt\": \"\xff\xfe\"}"), 400},
      {"/generate", "{\"prompt\": \"" + std::string(20000, 'x') + " y\"}", 400},
  };
  for (const Case& c : cases) {
    auto result = client.Post(c.path.c_str(), c.body, "application/json");
    ASSERT_TRUE(result) << c.path << " " << c.body.substr(0, 80);
    EXPECT_EQ(result->status, c.status) << c.body.substr(0, 80) << " -> " << result->body;
    if (c.status != 413) {
      json error = json::parse(result->body, nullptr, false);
      EXPECT_TRUE(error.contains("error")) << result->body;
    }
    auto health = client.Get("/health");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
  }
}

TEST_P(Server, OverloadGets429AndAClientThatLeavesMidStreamLeavesNothingRunning) {
  ServerProcess server({"--max-inflight", "2"}, GetParam());
  // Two long requests occupy the server; a third is refused at once.
  std::vector<std::future<int>> long_ones;
  for (int i = 0; i < 2; ++i) {
    long_ones.push_back(std::async(std::launch::async, [&] {
      httplib::Client client = server.client();
      int status = 0;
      post_json(client, "/generate",
                {{"prompt", kPrompt},
                 {"generation_config", {{"max_new_tokens", 480}, {"ignore_eos", true}}}},
                &status);
      return status;
    }));
  }
  // As soon as both are admitted (a GPU finishes them in well under a second).
  httplib::Client client = server.client();
  for (int i = 0; i < 2000 && metric(client, "servelab_http_requests_in_flight") < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  int status = 0;
  json refused = post_json(client, "/generate", {{"prompt", "hi"}}, &status);
  EXPECT_EQ(status, 429) << refused.dump();
  for (auto& f : long_ones) EXPECT_EQ(f.get(), 200);

  // A streaming client that goes away after a few chunks.
  {
    httplib::Client leaving = server.client();
    int chunks = 0;
    httplib::Request request;
    request.method = "POST";
    request.path = "/generate";
    request.body = json({{"prompt", kPrompt},
                         {"generation_config", {{"max_new_tokens", 400}, {"ignore_eos", true}}},
                         {"stream", true}})
                       .dump();
    request.set_header("Content-Type", "application/json");
    request.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
      return ++chunks < 3;  // false: the client closes the connection
    };
    httplib::Response response;
    httplib::Error error;
    leaving.send(request, response, error);
  }
  double running = -1;
  for (int i = 0; i < 100; ++i) {
    running = metric(client, "servelab_requests_running");
    if (running == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(running, 0);
  EXPECT_EQ(metric(client, "servelab_requests_waiting"), 0);
}

TEST_P(Server, SigtermDrainsInFlightRequestsAndExitsZero) {
  ServerProcess server({}, GetParam());
  auto answer = std::async(std::launch::async, [&] {
    httplib::Client client = server.client();
    int status = 0;
    json body =
        post_json(client, "/generate",
                  {{"prompt", kPrompt}, {"generation_config", {{"max_new_tokens", 48}}}}, &status);
    return std::make_pair(status, body);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(server.terminate(30), 0);
  auto [status, body] = answer.get();
  EXPECT_EQ(status, 200) << body.dump();
}

INSTANTIATE_TEST_SUITE_P(Batching, Server, ::testing::Values("static", "continuous"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace servelab
