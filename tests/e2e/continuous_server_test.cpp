// `servelab serve --batching continuous` as a separate process on loopback: greedy answers equal
// `servelab generate`'s for many concurrent requests of mixed lengths, with a pool so small that
// requests are preempted (by swap and by recompute) as well as with an ample one; seeded samples
// do not depend on their batch companions; n samples differ; a storm of clients that leave
// mid-stream leaves no request and no block behind.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <future>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "e2e/server_process.h"

namespace servelab {
namespace {

using namespace e2e;
using nlohmann::json;

class ContinuousServer : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!device_usable()) GTEST_SKIP() << "servelab generate --device " << kDevice << " fails here";
  }
};

const std::vector<std::string> kPrompts = {
    "Tom had a red ball.", "The cat sat on the mat.", "One day, a girl named Lily",
    "Ben and Mia wanted to build a boat. They looked for wood and rope near the river."};

/// 64 concurrent greedy requests of mixed prompt and output lengths; each answer must equal the
/// request's answer alone.
void expect_greedy_answers_alone(ServerProcess& server) {
  const int count = 64;
  std::vector<std::future<std::pair<int, json>>> answers;
  for (int i = 0; i < count; ++i) {
    answers.push_back(std::async(std::launch::async, [&, i] {
      httplib::Client client = server.client();
      const json body = {{"prompt", kPrompts[i % 4]},
                         {"generation_config", {{"max_new_tokens", 8 + (i % 5) * 12}}}};
      int status = 0;
      json answer = post_json(client, "/generate", body, &status);
      return std::make_pair(status, answer);
    }));
  }
  for (int i = 0; i < count; ++i) {
    auto [status, answer] = answers[i].get();
    ASSERT_EQ(status, 200) << answer.dump();
    EXPECT_EQ(answer["choices"][0]["text"], generate_alone(kPrompts[i % 4], 8 + (i % 5) * 12))
        << "request " << i;
  }
}

/// Waits until the server has nothing running or waiting; then every block must be free.
void expect_everything_free(httplib::Client& client) {
  double running = -1, waiting = -1;
  for (int i = 0; i < 200; ++i) {
    running = metric(client, "servelab_requests_running");
    waiting = metric(client, "servelab_requests_waiting");
    if (running == 0 && waiting == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(running, 0);
  EXPECT_EQ(waiting, 0);
  EXPECT_EQ(metric(client, "servelab_requests_swapped"), 0);
  EXPECT_EQ(metric(client, "servelab_kv_blocks\\{pool=\"gpu\",state=\"free\"\\}"),
            metric(client, "servelab_kv_blocks\\{pool=\"gpu\",state=\"total\"\\}"));
  EXPECT_EQ(metric(client, "servelab_kv_blocks\\{pool=\"cpu\",state=\"free\"\\}"),
            metric(client, "servelab_kv_blocks\\{pool=\"cpu\",state=\"total\"\\}"));
}

TEST_F(ContinuousServer, SixtyFourConcurrentGreedyRequestsEqualTheirAnswersAlone) {
  ServerProcess server({"--max-inflight", "128"}, "continuous");
  expect_greedy_answers_alone(server);
  httplib::Client client = server.client();
  EXPECT_EQ(metric(client, "servelab_preemptions_total\\{mode=\"swap\"\\}"), 0)
      << "an ample pool preempts nothing";
  expect_everything_free(client);
}

TEST_F(ContinuousServer, PreemptionBySwapLeavesGreedyAnswersUnchanged) {
  // 24 blocks of 8 tokens: a few requests fill it, so running ones must make room.
  ServerProcess server({"--max-inflight", "128", "--num-gpu-blocks", "24", "--block-size", "8",
                        "--num-cpu-blocks", "256", "--preemption-mode", "swap"},
                       "continuous");
  expect_greedy_answers_alone(server);
  httplib::Client client = server.client();
  EXPECT_GT(metric(client, "servelab_preemptions_total\\{mode=\"swap\"\\}"), 0);
  expect_everything_free(client);
}

TEST_F(ContinuousServer, PreemptionByRecomputeLeavesGreedyAnswersUnchanged) {
  ServerProcess server({"--max-inflight", "128", "--num-gpu-blocks", "24", "--block-size", "8",
                        "--preemption-mode", "recompute"},
                       "continuous");
  expect_greedy_answers_alone(server);
  httplib::Client client = server.client();
  EXPECT_GT(metric(client, "servelab_preemptions_total\\{mode=\"recompute\"\\}"), 0);
  EXPECT_EQ(metric(client, "servelab_preemptions_total\\{mode=\"swap\"\\}"), 0);
  expect_everything_free(client);
}

TEST_F(ContinuousServer, ASeededSampleIsTheSameAloneAndInABusyBatchAndNSamplesDiffer) {
  ServerProcess server({"--max-inflight", "64"}, "continuous");
  const json sampled = {{"model", "servelab-stories"}, {"prompt", kPrompts[2]}, {"max_tokens", 40},
                        {"temperature", 0.9},          {"top_p", 0.95},         {"seed", 1234}};
  httplib::Client client = server.client();
  int status = 0;
  const json alone = post_json(client, "/v1/completions", sampled, &status);
  ASSERT_EQ(status, 200) << alone.dump();

  // The same request among others with different settings, greedy and sampled.
  std::vector<std::future<std::pair<int, json>>> others;
  for (int i = 0; i < 12; ++i) {
    others.push_back(std::async(std::launch::async, [&, i] {
      httplib::Client other = server.client();
      json body = {{"model", "servelab-stories"},
                   {"prompt", kPrompts[i % 4]},
                   {"max_tokens", 20 + i * 3},
                   {"temperature", (i % 3) * 0.5},
                   {"top_k", i % 2 == 0 ? 0 : 20}};
      int other_status = 0;
      json answer = post_json(other, "/v1/completions", body, &other_status);
      return std::make_pair(other_status, answer);
    }));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const json busy = post_json(client, "/v1/completions", sampled, &status);
  ASSERT_EQ(status, 200) << busy.dump();
  for (auto& other : others) EXPECT_EQ(other.get().first, 200);
  EXPECT_EQ(busy["choices"][0]["text"], alone["choices"][0]["text"]);

  json four = sampled;
  four["n"] = 4;
  four.erase("seed");
  const json answer = post_json(client, "/v1/completions", four, &status);
  ASSERT_EQ(status, 200) << answer.dump();
  ASSERT_EQ(answer["choices"].size(), 4u);
  std::set<std::string> texts;
  std::set<int> indices;
  for (const json& choice : answer["choices"]) {
    texts.insert(choice["text"].get<std::string>());
    indices.insert(choice["index"].get<int>());
  }
  EXPECT_EQ(texts.size(), 4u) << answer.dump();
  EXPECT_EQ(indices, (std::set<int>{0, 1, 2, 3}));
  expect_everything_free(client);
}

TEST_F(ContinuousServer, ADisconnectStormLeavesNoRequestAndNoBlockBehind) {
  // A small pool, so that some of the requests are swapped out when their clients leave.
  ServerProcess server({"--max-inflight", "256", "--num-gpu-blocks", "64", "--block-size", "8",
                        "--num-cpu-blocks", "512"},
                       "continuous");
  const int count = 200;
  std::atomic<int> completed{0}, left{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < count; ++i) {
    clients.emplace_back([&, i] {
      std::mt19937 random(static_cast<uint32_t>(i));
      const bool leaves = i % 2 == 1;
      const int leave_after = 1 + static_cast<int>(random() % 20);
      httplib::Client client = server.client();
      httplib::Request request;
      request.method = "POST";
      request.path = i % 3 == 0 ? "/v1/completions" : "/generate";
      const json body =
          i % 3 == 0
              ? json{{"model", "servelab-stories"},
                     {"prompt", kPrompts[i % 4]},
                     {"max_tokens", 30 + i % 40},
                     {"n", 1 + i % 2},
                     {"stream", true}}
              : json{{"prompt", kPrompts[i % 4]},
                     {"generation_config", {{"max_new_tokens", 30 + i % 40}, {"ignore_eos", true}}},
                     {"stream", true}};
      request.body = body.dump();
      request.set_header("Content-Type", "application/json");
      int chunks = 0;
      bool done = false;
      request.content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
        if (std::string(data, length).find("[DONE]") != std::string::npos) done = true;
        return !(leaves && ++chunks >= leave_after);  // false: the client hangs up
      };
      httplib::Response response;
      httplib::Error error;
      client.send(request, response, error);
      if (done) completed += 1;
      if (leaves) left += 1;
    });
  }
  for (std::thread& client : clients) client.join();
  EXPECT_GE(completed.load(), count / 2) << "every client that stays gets its whole stream";
  httplib::Client client = server.client();
  expect_everything_free(client);
  EXPECT_EQ(client.Get("/health")->status, 200);
}

TEST_F(ContinuousServer, BeamSearchEqualsTransformersGenerateOnTheEmbeddedModel) {
  // tests/fixtures/embedded/beam_reference.json: transformers' generate(num_beams=...) in fp32
  // (tests/fixtures/make_beam_references.py, run on the device machine).
  std::ifstream file(testing::fixture_path("embedded/beam_reference.json"));
  ASSERT_TRUE(file) << "the beam-search fixture is missing";
  const json reference = json::parse(file);
  ServerProcess server({"--max-inflight", "64"}, "continuous");
  // All cases at once: beam requests share the batch with each other.
  std::vector<std::future<std::pair<int, json>>> answers;
  for (const json& c : reference["cases"]) {
    answers.push_back(std::async(std::launch::async, [&server, c] {
      httplib::Client client = server.client();
      const json body = {{"prompt", c["prompt"]},
                         {"generation_config",
                          {{"max_new_tokens", c["max_new_tokens"]},
                           {"num_beams", c["num_beams"]},
                           {"num_return_sequences", c["num_return_sequences"]},
                           {"early_stopping", c["early_stopping"]},
                           {"length_penalty", c["length_penalty"]}}}};
      int status = 0;
      json answer = post_json(client, "/generate", body, &status);
      return std::make_pair(status, answer);
    }));
  }
  size_t index = 0;
  for (const json& c : reference["cases"]) {
    auto [status, answer] = answers[index++].get();
    ASSERT_EQ(status, 200) << answer.dump();
    const json& expected = c["sequences"];
    ASSERT_EQ(answer["choices"].size(), expected.size()) << c.dump();
    for (size_t i = 0; i < expected.size(); ++i) {
      const json& choice = answer["choices"][i];
      EXPECT_EQ(choice["index"], i);
      EXPECT_EQ(choice["text"], expected[i]["text"])
          << "case " << index - 1 << " (" << c["prompt"] << ", num_beams " << c["num_beams"]
          << ", early_stopping " << c["early_stopping"] << ", length_penalty "
          << c["length_penalty"] << "), sequence " << i;
      EXPECT_EQ(choice["finish_reason"],
                expected[i]["ended_with_eos"].get<bool>() ? "stop" : "length");
    }
  }
  httplib::Client client = server.client();
  expect_everything_free(client);
}

}  // namespace
}  // namespace servelab
