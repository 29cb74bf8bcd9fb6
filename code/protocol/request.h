// Parses the three generation APIs (native /generate, OpenAI /v1/completions and
// /v1/chat/completions) into one validated GenerateRequest. Pure functions of the body text:
// no threads, no sockets, no tokenizer (the server checks the context length after tokenizing).
#pragma once

#include <string>
#include <vector>

#include "protocol/chat_template.h"
#include "protocol/generation_config.h"
#include "protocol/protocol_limits.h"

namespace servelab {

/// Which route a request came in on; it decides the response shape.
enum class ApiKind {
  kNative,           ///< POST /generate
  kCompletions,      ///< POST /v1/completions
  kChatCompletions,  ///< POST /v1/chat/completions
};

/// "/generate", "/v1/completions" or "/v1/chat/completions".
const char* route_of(ApiKind api);

/// One parsed, validated generation request, whatever API it came from.
struct GenerateRequest {
  ApiKind api = ApiKind::kNative;
  /// The model the client named (validated against ProtocolLimits::served_model_name); the served
  /// name when a native request left it out. Responses echo it.
  std::string model;
  /// The text to tokenize: the prompt, or the chat rendered through the model's template.
  std::string prompt;
  /// Chat requests only: the messages as sent (before rendering).
  std::vector<ChatMessage> messages;
  GenerationConfig config;
  bool stream = false;
  /// OpenAI's stream_options.include_usage: send a last chunk with usage and empty choices.
  /// Native streams always end with usage, so this is true for them.
  bool include_usage = false;

  /// How error messages spell config fields for this request's API.
  FieldSpelling spelling() const {
    return api == ApiKind::kNative ? FieldSpelling::kNative : FieldSpelling::kOpenAi;
  }
  /// The field to blame for a context overflow: "max_tokens" or "generation_config.max_new_tokens".
  std::string max_tokens_param() const { return spelled_field("max_new_tokens", spelling()); }
};

/// Parses and validates a request body for `api`. Throws ProtocolError: 400 for malformed JSON,
/// unknown fields, wrong types, out-of-range values and refused features; 404 for an unknown model.
/// `chat_template` renders chat messages (unused for the other APIs).
GenerateRequest parse_generate_request(ApiKind api, const std::string& body,
                                       const ProtocolLimits& limits,
                                       const ChatTemplate& chat_template);

}  // namespace servelab
