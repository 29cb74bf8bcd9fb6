// Builds the JSON bodies servelab answers with: native and OpenAI responses, streaming chunks,
// the error object and the model list, plus server-sent-event framing. Pure functions: the
// caller supplies ids, timestamps and text; nothing here reads a clock or writes a socket.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/protocol_error.h"

namespace servelab {

/// Why a sequence ended: "stop" (EOS or a stop string), "length" (max_new_tokens or the context),
/// "abort" (cancelled: the client left or the server shut down; native API only, OpenAI's
/// responses never carry it because an aborted OpenAI request gets no response).
enum class FinishReason { kStop, kLength, kAbort };
const char* to_string(FinishReason reason);

/// One finished sequence of a non-streamed response.
struct CompletionChoice {
  int64_t index = 0;  ///< 0 .. n-1
  std::string text;   ///< the generated text (the stop string that ended it not included)
  FinishReason finish_reason = FinishReason::kStop;
};

/// Token counts over the whole request (all n sequences for completion_tokens).
struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};
/// {"prompt_tokens", "completion_tokens", "total_tokens"}.
nlohmann::json usage_json(const Usage& usage);

/// What identifies an OpenAI response and every chunk of its stream.
struct ResponseIdentity {
  std::string id;       ///< make_response_id(...)
  int64_t created = 0;  ///< Unix seconds when the request was received
  std::string model;    ///< the model name the request used
};
/// "cmpl-<16 hex digits>" for completions, "chatcmpl-<16 hex digits>" for chat; unique for a
/// unique `sequence_number` (the server counts requests; it may mix in its start time).
std::string make_response_id(bool chat, uint64_t sequence_number);

// ---- whole responses ----

/// POST /generate: {"choices": [{"text", "index", "finish_reason"}], "usage": {...}}.
nlohmann::json native_response(const std::vector<CompletionChoice>& choices, const Usage& usage);
/// POST /v1/completions: {"id", "object": "text_completion", "created", "model",
/// "choices": [{"text", "index", "logprobs": null, "finish_reason"}], "usage"}.
nlohmann::json completion_response(const ResponseIdentity& identity,
                                   const std::vector<CompletionChoice>& choices,
                                   const Usage& usage);
/// POST /v1/chat/completions: {"id", "object": "chat.completion", "created", "model",
/// "choices": [{"index", "message": {"role": "assistant", "content"}, "logprobs": null,
/// "finish_reason"}], "usage"}.
nlohmann::json chat_completion_response(const ResponseIdentity& identity,
                                        const std::vector<CompletionChoice>& choices,
                                        const Usage& usage);

// ---- streaming chunks (each sent as one SSE event) ----

/// Native stream: {"choices": [{"text", "index", "finish_reason": null|"stop"|...}]}.
/// The stream ends with native_usage_chunk() and then sse_done().
nlohmann::json native_chunk(int64_t index, const std::string& text,
                            std::optional<FinishReason> finish_reason = std::nullopt);
/// Native stream's last event before [DONE]: {"choices": [], "usage": {...}}.
nlohmann::json native_usage_chunk(const Usage& usage);

/// /v1/completions stream: a "text_completion" object with one choice {"text", "index",
/// "logprobs": null, "finish_reason"}; when `include_usage` the chunk carries "usage": null as
/// OpenAI's do (the totals come in usage_chunk()).
nlohmann::json completion_chunk(const ResponseIdentity& identity, int64_t index,
                                const std::string& text, std::optional<FinishReason> finish_reason,
                                bool include_usage);

/// /v1/chat/completions stream, a "chat.completion.chunk" per event. Per choice index: first
/// chat_role_chunk (delta {"role": "assistant", "content": ""}), then chat_content_chunk for each
/// piece of text (delta {"content"}), then chat_finish_chunk (delta {}, finish_reason set).
nlohmann::json chat_role_chunk(const ResponseIdentity& identity, int64_t index, bool include_usage);
nlohmann::json chat_content_chunk(const ResponseIdentity& identity, int64_t index,
                                  const std::string& text, bool include_usage);
nlohmann::json chat_finish_chunk(const ResponseIdentity& identity, int64_t index,
                                 FinishReason finish_reason, bool include_usage);

/// The optional last chunk of an OpenAI stream with include_usage: same id/object/created/model,
/// "choices": [] and the usage totals. `chat` picks the object name.
nlohmann::json usage_chunk(const ResponseIdentity& identity, bool chat, const Usage& usage);

// ---- errors and models ----

/// {"error": {"message", "type", "param", "code"}}, param and code null when empty.
nlohmann::json error_body(const ProtocolError& error);

/// One entry of GET /v1/models.
struct ModelCard {
  std::string id;
  int64_t created = 0;  ///< Unix seconds (when the server loaded it)
  std::string owned_by = "servelab";
};
/// GET /v1/models: {"object": "list", "data": [{"id", "object": "model", "created",
/// "owned_by"}]}.
nlohmann::json model_list(const std::vector<ModelCard>& models);

// ---- serialising and SSE framing ----

/// Compact JSON text. Invalid UTF-8 (which the detokenizer should never emit) is replaced by
/// U+FFFD instead of throwing, so a response can always be written.
std::string to_json_text(const nlohmann::json& value);

/// One server-sent event: "data: <compact json>\n\n".
std::string sse_event(const nlohmann::json& value);
/// The end of every stream: "data: [DONE]\n\n".
std::string sse_done();

}  // namespace servelab
