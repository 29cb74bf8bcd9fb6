// Response bodies, streaming chunks, error objects and SSE framing, checked field by field
// against the shapes OpenAI's API returns.
#include "protocol/response.h"

#include <gtest/gtest.h>

#include <string>

namespace servelab {
namespace {

using nlohmann::json;

const ResponseIdentity kIdentity{"cmpl-000000000000002a", 1700000000, "servelab-stories"};
const Usage kUsage{5, 7};

TEST(Response, UsageTotalsPromptAndCompletion) {
  EXPECT_EQ(usage_json(kUsage),
            json::parse(R"({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12})"));
}

TEST(Response, IdsArePrefixedAndUniquePerSequenceNumber) {
  EXPECT_EQ(make_response_id(false, 42), "cmpl-000000000000002a");
  EXPECT_EQ(make_response_id(true, 42), "chatcmpl-000000000000002a");
  EXPECT_NE(make_response_id(false, 1), make_response_id(false, 2));
}

TEST(Response, NativeShape) {
  json body = native_response(
      {{0, "The cat", FinishReason::kLength}, {1, "sat.", FinishReason::kAbort}}, kUsage);
  EXPECT_EQ(body, json::parse(R"({"choices": [
      {"text": "The cat", "index": 0, "finish_reason": "length"},
      {"text": "sat.", "index": 1, "finish_reason": "abort"}],
      "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})"));
}

TEST(Response, CompletionShapeMatchesOpenAi) {
  json body = completion_response(kIdentity, {{0, "Hi", FinishReason::kStop}}, kUsage);
  EXPECT_EQ(body, json::parse(R"({"id": "cmpl-000000000000002a", "object": "text_completion",
      "created": 1700000000, "model": "servelab-stories",
      "choices": [{"text": "Hi", "index": 0, "logprobs": null, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})"));
}

TEST(Response, ChatCompletionShapeMatchesOpenAi) {
  json body = chat_completion_response(kIdentity, {{0, "Hi", FinishReason::kLength}}, kUsage);
  EXPECT_EQ(body, json::parse(R"({"id": "cmpl-000000000000002a", "object": "chat.completion",
      "created": 1700000000, "model": "servelab-stories",
      "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                   "logprobs": null, "finish_reason": "length"}],
      "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})"));
}

TEST(Response, NativeChunksCarryNullFinishReasonUntilTheEnd) {
  EXPECT_EQ(native_chunk(0, "The"),
            json::parse(R"({"choices": [{"text": "The", "index": 0, "finish_reason": null}]})"));
  EXPECT_EQ(native_chunk(1, "", FinishReason::kStop)["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(native_usage_chunk(kUsage),
            json::parse(R"({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7,
                            "total_tokens": 12}})"));
}

TEST(Response, CompletionChunkShapeWithAndWithoutUsageField) {
  json chunk = completion_chunk(kIdentity, 0, " cat", std::nullopt, /*include_usage=*/false);
  EXPECT_EQ(chunk, json::parse(R"({"id": "cmpl-000000000000002a", "object": "text_completion",
      "created": 1700000000, "model": "servelab-stories",
      "choices": [{"text": " cat", "index": 0, "logprobs": null, "finish_reason": null}]})"));
  json with_usage = completion_chunk(kIdentity, 2, "", FinishReason::kLength, true);
  EXPECT_TRUE(with_usage.contains("usage"));
  EXPECT_TRUE(with_usage["usage"].is_null());
  EXPECT_EQ(with_usage["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(with_usage["choices"][0]["index"], 2);
}

TEST(Response, ChatChunksGoRoleThenContentThenFinish) {
  json role = chat_role_chunk(kIdentity, 0, false);
  EXPECT_EQ(role["object"], "chat.completion.chunk");
  EXPECT_EQ(role["choices"][0]["delta"], json::parse(R"({"role": "assistant", "content": ""})"));
  EXPECT_TRUE(role["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(role.contains("usage"));

  json content = chat_content_chunk(kIdentity, 0, "Once", false);
  EXPECT_EQ(content["choices"][0]["delta"], json::parse(R"({"content": "Once"})"));
  EXPECT_TRUE(content["choices"][0]["finish_reason"].is_null());

  json finish = chat_finish_chunk(kIdentity, 0, FinishReason::kStop, true);
  EXPECT_EQ(finish["choices"][0]["delta"], json::object());
  EXPECT_EQ(finish["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(finish["usage"].is_null());
  for (const json& chunk : {role, content, finish}) {
    EXPECT_EQ(chunk["id"], kIdentity.id);
    EXPECT_EQ(chunk["created"], kIdentity.created);
    EXPECT_EQ(chunk["model"], kIdentity.model);
  }
}

TEST(Response, UsageChunkHasEmptyChoices) {
  json chat = usage_chunk(kIdentity, /*chat=*/true, kUsage);
  EXPECT_EQ(chat["object"], "chat.completion.chunk");
  EXPECT_EQ(chat["choices"], json::array());
  EXPECT_EQ(chat["usage"]["total_tokens"], 12);
  EXPECT_EQ(usage_chunk(kIdentity, false, kUsage)["object"], "text_completion");
}

TEST(Response, ErrorBodyHasOpenAiFieldsWithNullsForEmpty) {
  EXPECT_EQ(error_body(ProtocolError::invalid_request("'top_p' must be in (0, 1], got 2", "top_p")),
            json::parse(R"({"error": {"message": "'top_p' must be in (0, 1], got 2",
                "type": "invalid_request_error", "param": "top_p", "code": null}})"));
  json unavailable = error_body(ProtocolError::unavailable("shutting down"));
  EXPECT_TRUE(unavailable["error"]["param"].is_null());
  EXPECT_EQ(unavailable["error"]["code"], "service_unavailable");
}

TEST(Response, ErrorFactoriesCarryTheirStatus) {
  EXPECT_EQ(ProtocolError::invalid_request("x").status(), 400);
  EXPECT_EQ(ProtocolError::unauthorized().status(), 401);
  EXPECT_EQ(ProtocolError::model_not_found("a", "b").status(), 404);
  EXPECT_EQ(ProtocolError::route_not_found("GET", "/nope").status(), 404);
  EXPECT_NE(ProtocolError::route_not_found("GET", "/nope").message().find("GET /nope"),
            std::string::npos);
  EXPECT_EQ(ProtocolError::payload_too_large(1024).status(), 413);
  EXPECT_NE(ProtocolError::payload_too_large(1024).message().find("1024 bytes"), std::string::npos);
  EXPECT_EQ(ProtocolError::overloaded(64).status(), 429);
  EXPECT_EQ(ProtocolError::overloaded(64).type(), "rate_limit_error");
  EXPECT_EQ(ProtocolError::unavailable("loading").status(), 503);
  EXPECT_EQ(ProtocolError::internal("boom").status(), 500);
}

TEST(Response, ModelListShape) {
  EXPECT_EQ(model_list({{"servelab-stories", 1700000000, "servelab"}}),
            json::parse(R"({"object": "list", "data": [{"id": "servelab-stories",
                "object": "model", "created": 1700000000, "owned_by": "servelab"}]})"));
  EXPECT_EQ(model_list({}), json::parse(R"({"object": "list", "data": []})"));
}

TEST(Sse, EventFramingIsDataLineAndBlankLine) {
  EXPECT_EQ(sse_event(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
}

TEST(Sse, NewlinesInTextStayEscapedInsideOneDataLine) {
  const std::string event = sse_event(native_chunk(0, "line one\nline two\n\n"));
  // One event = exactly one "data:" line and the terminating blank line.
  EXPECT_EQ(event.find('\n'), event.size() - 2);
  EXPECT_EQ(json::parse(event.substr(6))["choices"][0]["text"], "line one\nline two\n\n");
}

TEST(Sse, AStreamConcatenatesToTheWholeText) {
  std::string stream;
  stream += sse_event(chat_role_chunk(kIdentity, 0, false));
  for (const char* piece : {"Once", " upon", " a time"}) {
    stream += sse_event(chat_content_chunk(kIdentity, 0, piece, false));
  }
  stream += sse_event(chat_finish_chunk(kIdentity, 0, FinishReason::kStop, false));
  stream += sse_done();
  // Parse the stream as a client would: split on blank lines, strip "data: ".
  std::string text;
  size_t begin = 0, events = 0;
  bool saw_done = false;
  while (begin < stream.size()) {
    const size_t end = stream.find("\n\n", begin);
    ASSERT_NE(end, std::string::npos);
    const std::string line = stream.substr(begin, end - begin);
    ASSERT_EQ(line.rfind("data: ", 0), 0u) << line;
    const std::string payload = line.substr(6);
    ++events;
    if (payload == "[DONE]") {
      saw_done = true;
    } else {
      const json delta = json::parse(payload)["choices"][0]["delta"];
      if (delta.contains("content")) text += delta["content"].get<std::string>();
    }
    begin = end + 2;
  }
  EXPECT_EQ(text, "Once upon a time");
  EXPECT_EQ(events, 6u);
  EXPECT_TRUE(saw_done);
}

TEST(Sse, InvalidUtf8IsReplacedNotThrown) {
  std::string text = "ok \xff end";
  std::string serialised;
  ASSERT_NO_THROW(serialised = to_json_text(json{{"text", text}}));
  EXPECT_EQ(json::parse(serialised)["text"], "ok \xEF\xBF\xBD end");
}

}  // namespace
}  // namespace servelab
