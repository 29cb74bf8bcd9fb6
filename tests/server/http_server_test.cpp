// The HTTP layer on loopback with a fake "echo" engine: each route streamed and not, SSE framing,
// usage counts, errors for bad input, admission (429), API key (401), payload limit (413), client
// disconnects cancelling the request, and shutdown (503, drain).
#include "server/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_paths.h"

namespace servelab {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// The text piece the echo engine sends as output token `step` of choice `choice`.
std::string echo_piece(int64_t step, int64_t choice) {
  return std::string(1, static_cast<char>('a' + (step + choice) % 26));
}
std::string echo_text(int64_t tokens, int64_t choice) {
  std::string text;
  for (int64_t step = 0; step < tokens; ++step) text += echo_piece(step, choice);
  return text;
}

// A fake engine: every step (after `step_delay`) each active request gets one piece per choice;
// after min(prompt tokens, max_new_tokens) pieces every choice finishes ("length" when
// max_new_tokens was the limit, "stop" otherwise). max_new_tokens == 13 makes it fail (kError 500).
// It records the ids of the requests whose channel was cancelled.
class EchoEngine : public ServingEngine {
 public:
  explicit EchoEngine(std::chrono::milliseconds step_delay) : step_delay_(step_delay) {}
  ~EchoEngine() override { stop(0ms); }

  void start() override {
    thread_ = std::thread([this] { run(); });
  }
  void submit(ServingRequest request) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(Active{std::move(request), 0});
    }
    wake_.notify_all();
  }
  void stop(std::chrono::milliseconds) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  std::string batching() const override { return "echo"; }
  EngineGauges gauges() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    EngineGauges gauges;
    gauges.running = static_cast<int64_t>(active_.size());
    gauges.waiting = static_cast<int64_t>(queue_.size());
    gauges.kv_usage = 0.25;
    return gauges;
  }
  std::vector<int64_t> cancelled_ids() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cancelled_;
  }

 private:
  struct Active {
    ServingRequest request;
    int64_t produced = 0;
  };

  void run() {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || !active_.empty(); });
        if (stopping_) return;
        while (!queue_.empty()) {
          active_.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      std::this_thread::sleep_for(std::max(step_delay_, std::chrono::milliseconds(1)));
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = active_.begin(); it != active_.end();) {
        it = step(*it) ? active_.erase(it) : it + 1;
      }
    }
  }

  // One step of one request; true when it is done.
  bool step(Active& active) {
    const ServingRequest& request = active.request;
    OutputChannel& output = *request.output;
    if (output.cancelled()) {
      cancelled_.push_back(request.id);
      return true;
    }
    const int64_t choices = request.config.num_return_sequences;
    if (request.config.max_new_tokens == 13) {
      OutputEvent error;
      error.kind = OutputEvent::Kind::kError;
      error.error = "the fake engine failed";
      error.status = 500;
      output.send(error);
      return true;
    }
    const int64_t target = std::min<int64_t>(static_cast<int64_t>(request.prompt_tokens.size()),
                                             request.config.max_new_tokens);
    if (active.produced < target) {
      for (int64_t choice = 0; choice < choices; ++choice) {
        OutputEvent text;
        text.index = static_cast<int>(choice);
        text.text = echo_piece(active.produced, choice);
        output.send(text);
      }
      ++active.produced;
      return false;
    }
    for (int64_t choice = 0; choice < choices; ++choice) {
      OutputEvent finished;
      finished.kind = OutputEvent::Kind::kFinished;
      finished.index = static_cast<int>(choice);
      finished.finish_reason = target == request.config.max_new_tokens ? "length" : "stop";
      finished.completion_tokens = target;
      output.send(finished);
    }
    return true;
  }

  std::chrono::milliseconds step_delay_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Active> queue_;
  std::vector<Active> active_;
  std::vector<int64_t> cancelled_;
  bool stopping_ = false;
  std::thread thread_;
};

constexpr int64_t kContextLength = 512;
const char* kPrompt = "Once upon a time there was a little dog";
// Long enough that the echo engine can produce 60 pieces.
std::string long_prompt() {
  std::string text;
  for (int i = 0; i < 7; ++i) text += "once upon a time there was a cat. ";
  return text;
}

const Tokenizer& embedded_tokenizer() {
  static const Tokenizer tokenizer =
      Tokenizer::load(servelab::testing::source_path("models/servelab-stories"));
  return tokenizer;
}
ChatTemplate embedded_template() {
  return ChatTemplate::from_model_dir(servelab::testing::source_path("models/servelab-stories"));
}

// A real HttpServer on 127.0.0.1 (free port) in front of an EchoEngine, plus a client for it.
struct Harness {
  explicit Harness(ServerOptions options = {}, std::chrono::milliseconds step_delay = 0ms)
      : engine(step_delay) {
    options.port = 0;
    server = std::make_unique<HttpServer>(engine, embedded_tokenizer(), kContextLength,
                                          ProtocolLimits{}, embedded_template(), options);
    engine.start();
    server->start();
  }
  ~Harness() {
    server->shutdown(0ms);
    engine.stop(0ms);
  }
  std::unique_ptr<httplib::Client> client() const {
    auto result = std::make_unique<httplib::Client>("127.0.0.1", server->bound_port());
    result->set_read_timeout(10, 0);
    return result;
  }
  httplib::Result post(const std::string& path, const std::string& body,
                       const httplib::Headers& headers = {}) const {
    return client()->Post(path.c_str(), headers, body, "application/json");
  }
  httplib::Result get(const std::string& path) const { return client()->Get(path.c_str()); }

  EchoEngine engine;
  std::unique_ptr<HttpServer> server;
};

int64_t prompt_token_count(const std::string& text) {
  return static_cast<int64_t>(embedded_tokenizer().encode(text).size());
}

// The "data: ..." payloads of an SSE body; fails the test on bad framing.
std::vector<std::string> sse_payloads(const std::string& body) {
  std::vector<std::string> payloads;
  size_t start = 0;
  while (start < body.size()) {
    const size_t end = body.find("\n\n", start);
    EXPECT_NE(end, std::string::npos) << "event not ended by a blank line: " << body.substr(start);
    if (end == std::string::npos) break;
    const std::string event = body.substr(start, end - start);
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    payloads.push_back(event.substr(6));
    start = end + 2;
  }
  return payloads;
}

json body_of(const std::string& prompt_field, ApiKind api, int64_t max_tokens, bool stream,
             int64_t n = 1) {
  json body;
  if (api == ApiKind::kNative) {
    body = {{"prompt", prompt_field},
            {"generation_config", {{"max_new_tokens", max_tokens}, {"num_return_sequences", n}}}};
  } else {
    body = {{"model", "servelab-stories"}, {"max_tokens", max_tokens}, {"n", n}};
    if (api == ApiKind::kCompletions) {
      body["prompt"] = prompt_field;
    } else {
      body["messages"] = json::array({{{"role", "user"}, {"content", prompt_field}}});
    }
    if (stream) body["stream_options"] = {{"include_usage", true}};
  }
  body["stream"] = stream;
  return body;
}

int64_t prompt_tokens_for(ApiKind api, const std::string& prompt) {
  if (api != ApiKind::kChatCompletions) return prompt_token_count(prompt);
  return prompt_token_count(embedded_template().render({ChatMessage{"user", prompt}}));
}

std::string choice_text(ApiKind api, const json& choice) {
  if (api == ApiKind::kChatCompletions) {
    if (choice.contains("message")) return choice["message"]["content"].get<std::string>();
    return choice["delta"].value("content", "");
  }
  return choice["text"].get<std::string>();
}

class EveryRoute : public ::testing::TestWithParam<ApiKind> {};

TEST_P(EveryRoute, WholeResponseHasEchoTextFinishReasonAndUsage) {
  const ApiKind api = GetParam();
  Harness harness;
  const int64_t prompt_tokens = prompt_tokens_for(api, kPrompt);
  ASSERT_GT(prompt_tokens, 5);
  auto result = harness.post(route_of(api), body_of(kPrompt, api, 5, false).dump());
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200) << result->body;
  const json response = json::parse(result->body);
  ASSERT_EQ(response["choices"].size(), 1u);
  EXPECT_EQ(choice_text(api, response["choices"][0]), echo_text(5, 0));
  EXPECT_EQ(response["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(response["usage"]["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(response["usage"]["completion_tokens"], 5);
  EXPECT_EQ(response["usage"]["total_tokens"], prompt_tokens + 5);
}

TEST_P(EveryRoute, StreamedChunksConcatenateToTheWholeTextAndEndWithUsageAndDone) {
  const ApiKind api = GetParam();
  Harness harness;
  const int64_t max_tokens = 100;  // more than the prompt's tokens: finishes with "stop"
  const int64_t prompt_tokens = prompt_tokens_for(api, kPrompt);
  auto whole = harness.post(route_of(api), body_of(kPrompt, api, max_tokens, false).dump());
  auto streamed = harness.post(route_of(api), body_of(kPrompt, api, max_tokens, true).dump());
  ASSERT_TRUE(whole && streamed);
  ASSERT_EQ(streamed->status, 200) << streamed->body;
  EXPECT_EQ(streamed->get_header_value("Content-Type"), "text/event-stream");
  const std::string whole_text = choice_text(api, json::parse(whole->body)["choices"][0]);
  EXPECT_EQ(whole_text, echo_text(prompt_tokens, 0));

  const std::vector<std::string> payloads = sse_payloads(streamed->body);
  ASSERT_GE(payloads.size(), 3u);
  EXPECT_EQ(payloads.back(), "[DONE]");
  std::string text;
  std::string finish_reason;
  int text_chunks = 0;
  for (size_t i = 0; i + 2 < payloads.size(); ++i) {
    const json chunk = json::parse(payloads[i]);
    ASSERT_EQ(chunk["choices"].size(), 1u) << payloads[i];
    const std::string piece = choice_text(api, chunk["choices"][0]);
    text_chunks += piece.empty() ? 0 : 1;
    text += piece;
    if (!chunk["choices"][0]["finish_reason"].is_null()) {
      finish_reason = chunk["choices"][0]["finish_reason"];
    }
  }
  EXPECT_EQ(text, whole_text);
  EXPECT_EQ(text_chunks, prompt_tokens) << "one chunk per produced piece";
  EXPECT_EQ(finish_reason, "stop");
  const json usage_chunk = json::parse(payloads[payloads.size() - 2]);
  EXPECT_TRUE(usage_chunk["choices"].empty());
  EXPECT_EQ(usage_chunk["usage"]["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(usage_chunk["usage"]["completion_tokens"], prompt_tokens);
}

TEST_P(EveryRoute, SeveralChoicesEachGetTheirOwnTextAndUsageSumsThem) {
  const ApiKind api = GetParam();
  Harness harness;
  auto result = harness.post(route_of(api), body_of(kPrompt, api, 4, false, 3).dump());
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200) << result->body;
  const json response = json::parse(result->body);
  ASSERT_EQ(response["choices"].size(), 3u);
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(response["choices"][i]["index"], i);
    EXPECT_EQ(choice_text(api, response["choices"][i]), echo_text(4, i));
  }
  EXPECT_EQ(response["usage"]["completion_tokens"], 12);
}

INSTANTIATE_TEST_SUITE_P(HttpServer, EveryRoute,
                         ::testing::Values(ApiKind::kNative, ApiKind::kCompletions,
                                           ApiKind::kChatCompletions),
                         [](const auto& info) {
                           return std::string(info.param == ApiKind::kNative        ? "Native"
                                              : info.param == ApiKind::kCompletions ? "Completions"
                                                                                    : "Chat");
                         });

TEST(HttpServer, ModelsHealthAndMetricsAnswer) {
  Harness harness;
  ASSERT_EQ(harness.post("/generate", body_of(kPrompt, ApiKind::kNative, 3, false).dump())->status,
            200);
  auto models = harness.get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "servelab-stories");

  auto health = harness.get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  const json health_body = json::parse(health->body);
  EXPECT_EQ(health_body["status"], "ok");
  EXPECT_EQ(health_body["model"], "servelab-stories");
  EXPECT_EQ(health_body["batching"], "echo");

  auto metrics = harness.get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  for (const char* name :
       {"servelab_requests_running", "servelab_requests_waiting", "servelab_requests_swapped",
        "servelab_kv_cache_usage_ratio 0.25", "servelab_prompt_tokens_total",
        "servelab_generation_tokens_total 3", "servelab_time_to_first_token_seconds_bucket",
        "servelab_time_per_output_token_seconds_count 1",
        "servelab_e2e_request_latency_seconds_count 1",
        "servelab_request_success_total{finish_reason=\"length\"} 1",
        "servelab_request_errors_total"}) {
    EXPECT_NE(metrics->body.find(name), std::string::npos) << name << "\n" << metrics->body;
  }
}

void expect_error(const httplib::Result& result, int status, const std::string& message_part,
                  const std::string& param = "") {
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, status) << result->body;
  const json body = json::parse(result->body);
  ASSERT_TRUE(body.contains("error")) << result->body;
  EXPECT_NE(body["error"]["message"].get<std::string>().find(message_part), std::string::npos)
      << result->body;
  if (!param.empty()) {
    EXPECT_EQ(body["error"]["param"], param) << result->body;
  }
}

TEST(HttpServer, BadRequestsGetTheirStatusAndErrorObjectAndTheServerStaysUp) {
  ServerOptions options;
  options.payload_limit_bytes = 4096;
  Harness harness(options);
  expect_error(harness.post("/v1/completions", "{\"model\": "), 400, "");
  expect_error(
      harness.post("/v1/completions",
                   R"({"model": "servelab-stories", "prompt": "x", "temperature": "hot"})"),
      400, "temperature", "temperature");
  expect_error(harness.post("/v1/completions", R"({"model": "servelab-stories", "prompt": ""})"),
               400, "prompt", "prompt");
  expect_error(
      harness.post("/v1/completions", body_of(kPrompt, ApiKind::kCompletions, 510, false).dump()),
      400, "This model's maximum context length is 512 tokens", "max_tokens");
  expect_error(harness.post("/v1/completions", R"({"model": "gpt-4", "prompt": "x"})"), 404,
               "gpt-4");
  expect_error(harness.get("/v1/nothing"), 404, "/v1/nothing");
  expect_error(harness.post("/generate", std::string(10000, ' ')), 413, "");
  expect_error(harness.post("/generate", body_of(kPrompt, ApiKind::kNative, 13, false).dump()), 500,
               "the fake engine failed");
  EXPECT_EQ(harness.get("/health")->status, 200);
  EXPECT_EQ(harness.server->inflight_requests(), 0);
  EXPECT_GE(harness.server->metrics().value("servelab_request_errors_total",
                                            {{"status", "400"}, {"type", "invalid_request_error"}}),
            2);
}

TEST(HttpServer, AnEngineErrorAfterTheStreamStartedIsAnErrorEventThenDone) {
  Harness harness;
  auto result =
      harness.post("/v1/completions", body_of(kPrompt, ApiKind::kCompletions, 13, true).dump());
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200) << "the status went out before the error";
  const std::vector<std::string> payloads = sse_payloads(result->body);
  ASSERT_GE(payloads.size(), 2u) << result->body;
  EXPECT_EQ(payloads.back(), "[DONE]");
  const json error = json::parse(payloads[payloads.size() - 2]);
  ASSERT_TRUE(error.contains("error")) << result->body;
  EXPECT_EQ(error["error"]["code"], "internal_error");
}

TEST(HttpServer, WrongOrMissingApiKeyGets401) {
  ServerOptions options;
  options.api_key = "secret";
  Harness harness(options);
  const std::string body = body_of(kPrompt, ApiKind::kNative, 2, false).dump();
  expect_error(harness.post("/generate", body), 401, "API key");
  expect_error(harness.post("/generate", body, {{"Authorization", "Bearer wrong"}}), 401,
               "API key");
  auto allowed = harness.post("/generate", body, {{"Authorization", "Bearer secret"}});
  ASSERT_TRUE(allowed);
  EXPECT_EQ(allowed->status, 200) << allowed->body;
  EXPECT_EQ(harness.get("/health")->status, 200) << "probes need no key";
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

TEST(HttpServer, RequestsPastTheAdmissionBoundGet429AtOnce) {
  ServerOptions options;
  options.max_inflight_requests = 2;
  Harness harness(options, 20ms);
  const std::string slow = body_of(long_prompt(), ApiKind::kNative, 15, false).dump();
  std::vector<int> statuses(2, 0);
  std::vector<std::thread> clients;
  for (int i = 0; i < 2; ++i) {
    clients.emplace_back([&, i] {
      auto result = harness.post("/generate", slow);
      statuses[i] = result ? result->status : -1;
    });
  }
  ASSERT_TRUE(wait_until([&] { return harness.server->inflight_requests() == 2; }, 3000ms));
  const auto before = std::chrono::steady_clock::now();
  expect_error(harness.post("/generate", slow), 429, "");
  EXPECT_LT(std::chrono::steady_clock::now() - before, 200ms) << "429 must not wait";
  EXPECT_EQ(harness.get("/health")->status, 200) << "spare pool threads still answer";
  for (auto& client : clients) client.join();
  EXPECT_EQ(statuses, (std::vector<int>{200, 200}));
  EXPECT_EQ(harness.post("/generate", slow)->status, 200) << "admits again once below the bound";
}

TEST(HttpServer, ClientThatLeavesMidStreamCancelsTheRequest) {
  Harness harness({}, 10ms);
  auto client = harness.client();
  httplib::Request request;
  request.method = "POST";
  request.path = "/generate";
  request.body = body_of(long_prompt(), ApiKind::kNative, 60, true).dump();
  request.set_header("Content-Type", "application/json");
  int chunks = 0;
  request.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
    return ++chunks < 2;  // leave after the second chunk
  };
  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  client->send(request, response, error);
  client->stop();
  EXPECT_EQ(chunks, 2);
  ASSERT_TRUE(wait_until([&] { return !harness.engine.cancelled_ids().empty(); }, 3000ms))
      << "the engine never saw the cancellation";
  EXPECT_TRUE(wait_until([&] { return harness.server->inflight_requests() == 0; }, 3000ms));
  EXPECT_EQ(harness.server->metrics().value("servelab_request_errors_total",
                                            {{"status", "499"}, {"type", "client_closed_request"}}),
            1);
}

TEST(HttpServer, WhileTheModelLoadsEveryRouteButMetricsAnswers503AndThenItServes) {
  ServerOptions options;
  options.port = 0;
  HttpServer server(options);
  server.start();
  httplib::Client client("127.0.0.1", server.bound_port());
  client.set_read_timeout(10, 0);
  auto health = client.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_EQ(json::parse(health->body)["status"], "loading");
  expect_error(client.Post("/generate", body_of(kPrompt, ApiKind::kNative, 3, false).dump(),
                           "application/json"),
               503, "still loading");
  expect_error(client.Get("/v1/models"), 503, "still loading");
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("servelab_requests_running 0"), std::string::npos) << metrics->body;

  EchoEngine engine(0ms);
  engine.start();
  server.attach(ServedModel{&engine, &embedded_tokenizer(), kContextLength, ProtocolLimits{},
                            embedded_template()});
  EXPECT_THROW(server.attach(ServedModel{&engine, &embedded_tokenizer(), kContextLength,
                                         ProtocolLimits{}, embedded_template()}),
               Error);
  EXPECT_EQ(client.Get("/health")->status, 200);
  auto answer = client.Post("/generate", body_of(kPrompt, ApiKind::kNative, 3, false).dump(),
                            "application/json");
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 200) << answer->body;
  server.shutdown(0ms);
  engine.stop(0ms);
}

TEST(HttpServer, ShutdownAnswers503DrainsInFlightRequestsAndReturns) {
  Harness harness({}, 10ms);
  const std::string slow = body_of(long_prompt(), ApiKind::kNative, 20, false).dump();
  int in_flight_status = 0;
  std::thread in_flight([&] { in_flight_status = harness.post("/generate", slow)->status; });
  ASSERT_TRUE(wait_until([&] { return harness.server->inflight_requests() == 1; }, 3000ms));
  std::thread stopper([&] { harness.server->shutdown(5000ms); });
  ASSERT_TRUE(wait_until([&] { return harness.server->shutting_down(); }, 1000ms));
  expect_error(harness.post("/generate", slow), 503, "shutting down");
  auto health = harness.get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_EQ(json::parse(health->body)["status"], "shutting_down");
  in_flight.join();
  EXPECT_EQ(in_flight_status, 200) << "in-flight requests finish within the grace period";
  const auto before = std::chrono::steady_clock::now();
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - before, 2000ms);
  EXPECT_FALSE(harness.get("/health")) << "the listener is closed";
}

TEST(HttpServer, ShutdownPastTheGraceCancelsStreamsStillRunning) {
  Harness harness({}, 20ms);
  const std::string slow = body_of(long_prompt(), ApiKind::kNative, 100, true).dump();
  std::thread in_flight([&] { harness.post("/generate", slow); });
  ASSERT_TRUE(wait_until([&] { return harness.server->inflight_requests() == 1; }, 3000ms));
  const auto before = std::chrono::steady_clock::now();
  harness.server->shutdown(50ms);
  EXPECT_LT(std::chrono::steady_clock::now() - before, 1500ms);
  in_flight.join();
  EXPECT_TRUE(wait_until([&] { return harness.engine.cancelled_ids().size() == 1; }, 2000ms));
  EXPECT_EQ(harness.server->inflight_requests(), 0);
}

}  // namespace
}  // namespace servelab
