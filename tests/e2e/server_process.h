// Helpers of the end-to-end server tests: a `servelab serve` child process on loopback, JSON and
// SSE requests with cpp-httplib's client, `servelab generate`'s answer as the reference, and
// /metrics values. Shared by the static and the continuous server's tests.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "test_paths.h"

extern char** environ;

namespace servelab::e2e {

using nlohmann::json;

// The same tests run twice: on the CPU (label e2e) and, built with SERVELAB_E2E_ON_CUDA, with the
// server and the reference `servelab generate` on the GPU (label gpu; skipped without one).
#ifdef SERVELAB_E2E_ON_CUDA
inline const char* const kDevice = "cuda";
#else
inline const char* const kDevice = "cpu";
#endif

/// Whether `servelab generate` can run on kDevice here (the CUDA variant skips without a GPU).
inline bool device_usable() {
  static const bool usable = [] {
    const std::string command = testing::binary_path("servelab") + " generate --device " + kDevice +
                                " --max-tokens 1 --prompt hi >/dev/null 2>&1";
    return std::system(command.c_str()) == 0;
  }();
  return usable;
}

/// A `servelab serve` child process; its port comes from the line it prints once listening, and
/// the constructor returns when it prints that its model is ready.
class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& extra_arguments,
                         const std::string& batching = "static") {
    std::vector<std::string> arguments = {testing::binary_path("servelab"),
                                          "serve",
                                          "--batching",
                                          batching,
                                          "--port",
                                          "0",
                                          "--device",
                                          kDevice};
    // A fixed KV pool unless the test sets one: sized from free GPU memory, the pool would depend
    // on what the other tests running on the same GPU hold at that moment.
    if (batching == "continuous" && std::find(extra_arguments.begin(), extra_arguments.end(),
                                              "--num-gpu-blocks") == extra_arguments.end()) {
      arguments.insert(arguments.end(), {"--num-gpu-blocks", "1024", "--num-cpu-blocks", "1024"});
    }
    arguments.insert(arguments.end(), extra_arguments.begin(), extra_arguments.end());
    start(arguments, "servelab serve: ready");
  }

  /// Any servelab command that prints "listening on http://127.0.0.1:PORT" (and then
  /// `ready_marker`, unless it is empty), e.g. `servelab balance`.
  struct Command {
    std::vector<std::string> arguments;  ///< after the binary
    std::string ready_marker;
  };
  explicit ServerProcess(const Command& command) {
    std::vector<std::string> arguments = {testing::binary_path("servelab")};
    arguments.insert(arguments.end(), command.arguments.begin(), command.arguments.end());
    start(arguments, command.ready_marker);
  }

 private:
  void start(std::vector<std::string> arguments, const std::string& ready_marker) {
    std::vector<char*> argv;
    for (std::string& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0)
      throw std::runtime_error("cannot start " + arguments[0]);
    posix_spawn_file_actions_destroy(&actions);
    close(pipe_fds[1]);
    output_ = fdopen(pipe_fds[0], "r");
    // "servelab serve: listening on http://127.0.0.1:PORT"
    char line[512];
    std::string said;  // what it printed, for the error message when it fails to start
    const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    while (fgets(line, sizeof line, output_) != nullptr) {
      said += line;
      std::smatch match;
      const std::string text = line;
      if (std::regex_search(text, match, listening)) {
        port_ = std::stoi(match[1]);
        break;
      }
    }
    if (port_ == 0) throw std::runtime_error("the server never said where it listens: " + said);
    // A server listens while the model loads (answering 503 "loading"), then says it is ready.
    bool ready = ready_marker.empty();
    while (!ready && fgets(line, sizeof line, output_) != nullptr) {
      said += line;
      ready = std::string(line).find(ready_marker) != std::string::npos;
    }
    if (!ready) throw std::runtime_error("the server never said it was ready: " + said);
    // Keep draining its output so that it never blocks on a full pipe.
    drain_ = std::thread([file = output_] {
      char buffer[512];
      while (fgets(buffer, sizeof buffer, file) != nullptr) {
      }
    });
  }

 public:
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (drain_.joinable()) drain_.join();
    if (output_ != nullptr) fclose(output_);
  }

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  /// SIGKILL, as a crash: no drain, connections reset.
  void kill_now() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = 0;
    }
  }
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

inline json post_json(httplib::Client& client, const std::string& path, const json& body,
                      int* status) {
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

inline StreamResult post_stream(httplib::Client& client, const std::string& path,
                                const json& body) {
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
inline std::string generate_alone(const std::string& prompt, int max_tokens) {
  static std::mutex mutex;
  static std::map<std::pair<std::string, int>, std::string> known;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = known.find({prompt, max_tokens});
  if (found != known.end()) return found->second;
  const std::string command = testing::binary_path("servelab") + " generate --json --device " +
                              kDevice + " --max-tokens " + std::to_string(max_tokens) +
                              " --prompt '" + prompt + "'";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  char buffer[4096];
  while (size_t read = fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, read);
  pclose(pipe);
  const std::string text = json::parse(output)["text"];
  known[{prompt, max_tokens}] = text;
  return text;
}

inline double metric(httplib::Client& client, const std::string& name) {
  auto result = client.Get("/metrics");
  if (!result) return -1;
  const std::regex line("(^|\n)" + name + "(\\{[^}]*\\})? ([0-9.eE+-]+)");
  std::smatch match;
  if (!std::regex_search(result->body, match, line)) return -1;
  return std::stod(match[3]);
}

}  // namespace servelab::e2e
