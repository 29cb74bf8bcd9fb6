// `servelab serve --batching static` run as a user runs it: a separate process on 127.0.0.1, spoken
// to over HTTP by cpp-httplib's client. Greedy answers must equal `servelab generate`'s whatever
// the route, streaming or not and whatever else is in the batch; bad input must get the right
// status and never take the server down; overload gets 429; a client that leaves mid-stream
// leaves nothing running; SIGTERM drains and exits 0.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "test_paths.h"

extern char** environ;

namespace servelab {
namespace {

using nlohmann::json;

/// A `servelab serve` child process; its port comes from the line it prints once listening.
class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& extra_arguments) {
    std::vector<std::string> arguments = {
        testing::binary_path("servelab"), "serve", "--batching", "static", "--port", "0"};
    arguments.insert(arguments.end(), extra_arguments.begin(), extra_arguments.end());
    std::vector<char*> argv;
    for (std::string& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0)
      throw std::runtime_error("cannot start " + arguments[0]);
    posix_spawn_file_actions_destroy(&actions);
    close(pipe_fds[1]);
    output_ = fdopen(pipe_fds[0], "r");
    // "servelab serve: listening on http://127.0.0.1:PORT"
    char line[512];
    const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    while (fgets(line, sizeof line, output_) != nullptr) {
      std::smatch match;
      const std::string text = line;
      if (std::regex_search(text, match, listening)) {
        port_ = std::stoi(match[1]);
        break;
      }
    }
    if (port_ == 0) throw std::runtime_error("the server never said where it listens");
    // Keep draining its output so that it never blocks on a full pipe.
    drain_ = std::thread([file = output_] {
      char buffer[512];
      while (fgets(buffer, sizeof buffer, file) != nullptr) {
      }
    });
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (drain_.joinable()) drain_.join();
    if (output_ != nullptr) fclose(output_);
  }

  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(120, 0);
    return client;
  }
  /// SIGTERM, then the exit code (or -1 if it did not exit within `seconds`).
  int terminate(int seconds) {
    kill(pid_, SIGTERM);
    for (int i = 0; i < seconds * 10; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return -1;
  }

 private:
  pid_t pid_ = 0;
  int port_ = 0;
  FILE* output_ = nullptr;
  std::thread drain_;
};

json post_json(httplib::Client& client, const std::string& path, const json& body, int* status) {
  auto result = client.Post(path.c_str(), body.dump(), "application/json");
  if (!result) {
    *status = -1;
    return json{{"client_error", httplib::to_string(result.error())}};
  }
  *status = result->status;
  return json::parse(result->body, nullptr, false);
}

/// The concatenated text of an SSE stream's chunks (OpenAI completions or native), and whether
/// it ended with [DONE].
struct StreamResult {
  std::string text;
  bool done = false;
  json usage;
  std::string finish_reason;
};

StreamResult post_stream(httplib::Client& client, const std::string& path, const json& body) {
  StreamResult result;
  std::string buffer;
  httplib::Request request;
  request.method = "POST";
  request.path = path;
  request.body = body.dump();
  request.set_header("Content-Type", "application/json");
  request.content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
    buffer.append(data, length);
    size_t end;
    while ((end = buffer.find("\n\n")) != std::string::npos) {
      const std::string event = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      const std::string payload = event.substr(6);
      if (payload == "[DONE]") {
        result.done = true;
        continue;
      }
      const json chunk = json::parse(payload);
      if (chunk.contains("usage") && !chunk["usage"].is_null()) result.usage = chunk["usage"];
      for (const auto& choice : chunk.value("choices", json::array())) {
        if (choice.contains("text")) result.text += choice["text"].get<std::string>();
        if (choice.contains("delta") && choice["delta"].contains("content"))
          result.text += choice["delta"]["content"].get<std::string>();
        if (choice.contains("finish_reason") && !choice["finish_reason"].is_null())
          result.finish_reason = choice["finish_reason"];
      }
    }
    return true;
  };
  httplib::Response response;
  httplib::Error error;
  client.send(request, response, error);
  return result;
}

/// `servelab generate`'s greedy text for a prompt, the reference every route must match
/// (remembered: each run starts a process and loads the model).
std::string generate_alone(const std::string& prompt, int max_tokens) {
  static std::mutex mutex;
  static std::map<std::pair<std::string, int>, std::string> known;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = known.find({prompt, max_tokens});
  if (found != known.end()) return found->second;
  const std::string command = testing::binary_path("servelab") + " generate --json --max-tokens " +
                              std::to_string(max_tokens) + " --prompt '" + prompt + "'";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  char buffer[4096];
  while (size_t read = fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, read);
  pclose(pipe);
  const std::string text = json::parse(output)["text"];
  known[{prompt, max_tokens}] = text;
  return text;
}

double metric(httplib::Client& client, const std::string& name) {
  auto result = client.Get("/metrics");
  if (!result) return -1;
  const std::regex line("(^|\n)" + name + "(\\{[^}]*\\})? ([0-9.eE+-]+)");
  std::smatch match;
  if (!std::regex_search(result->body, match, line)) return -1;
  return std::stod(match[3]);
}

const char* kPrompt = "Once upon a time, there was a little fox who lived in the forest.";

TEST(StaticServer, NativeAndOpenAiRoutesStreamingOrNotGiveGenerateAlonesGreedyText) {
  ServerProcess server({});
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

TEST(StaticServer, ThirtyTwoConcurrentRequestsOfMixedConfigsEachEqualTheirAnswerAlone) {
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

TEST(StaticServer, BadInputGetsTheRightStatusAndTheServerStaysUp) {
  // The example config file (sb_server_config.json at the top of the tree), with its port and
  // model path overridden by flags as a user would.
  ServerProcess server({"--config", testing::source_path("sb_server_config.json"), "--model",
                        testing::source_path("models/servelab-stories")});
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

TEST(StaticServer, OverloadGets429AndAClientThatLeavesMidStreamLeavesNothingRunning) {
  ServerProcess server({"--max-inflight", "2"});
  // Two long requests occupy the server; a third is refused at once.
  std::vector<std::future<int>> long_ones;
  for (int i = 0; i < 2; ++i) {
    long_ones.push_back(std::async(std::launch::async, [&] {
      httplib::Client client = server.client();
      int status = 0;
      post_json(client, "/generate",
                {{"prompt", kPrompt},
                 {"generation_config", {{"max_new_tokens", 300}, {"ignore_eos", true}}}},
                &status);
      return status;
    }));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  httplib::Client client = server.client();
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

TEST(StaticServer, SigtermDrainsInFlightRequestsAndExitsZero) {
  ServerProcess server({});
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

}  // namespace
}  // namespace servelab
