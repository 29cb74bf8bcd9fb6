// The errors a request can earn: an HTTP status plus OpenAI's error object fields. Parsing and
// validation throw ProtocolError; the HTTP layer catches it and sends error_body() with status().
// This module never talks to a socket: it only says what to answer.
#pragma once

#include <cstdint>
#include <string>

#include "common/error.h"

namespace servelab {

/// A request error with everything the HTTP layer needs to answer it, shaped like OpenAI's
/// {"error": {"message", "type", "param", "code"}} (see response.h's error_body()).
/// It is a servelab::Error, so code that only knows Error still gets the message.
class ProtocolError : public Error {
 public:
  /// @param status HTTP status (400, 401, 404, 413, 429, 500, 503).
  /// @param type OpenAI's error type, e.g. "invalid_request_error".
  /// @param param the request field at fault ("temperature", "generation_config.top_p"); empty
  ///        when no single field is (written as JSON null).
  /// @param code a machine-readable code such as "model_not_found"; empty for null.
  ProtocolError(int status, std::string type, const std::string& message, std::string param = "",
                std::string code = "");

  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  std::string message() const { return what(); }

  /// 400: the request is malformed or a field is out of range. `param` names the field.
  static ProtocolError invalid_request(const std::string& message, const std::string& param = "",
                                       const std::string& code = "");
  /// 404 "model_not_found": the request names a model this server does not serve.
  static ProtocolError model_not_found(const std::string& requested, const std::string& served);
  /// 404: no such route, e.g. "GET /v1/nothing".
  static ProtocolError route_not_found(const std::string& method, const std::string& path);
  /// 401: missing or wrong `Authorization: Bearer` key.
  static ProtocolError unauthorized();
  /// 413: the body is over the configured payload limit.
  static ProtocolError payload_too_large(uint64_t limit_bytes);
  /// 429: the admission bound is reached; the client should retry later.
  static ProtocolError overloaded(int64_t max_requests_in_system);
  /// 503: the server is still loading its model or is shutting down; `reason` says which.
  static ProtocolError unavailable(const std::string& reason);
  /// 500: a bug or an engine failure; the message is passed on as is.
  static ProtocolError internal(const std::string& message);

 private:
  int status_;
  std::string type_;
  std::string param_;
  std::string code_;
};

/// Throws the 400 "context_length_exceeded" error when a prompt of `prompt_tokens` tokens plus
/// `max_new_tokens` new tokens does not fit in `context_length` (p + m > n). The message is exactly
/// "This model's maximum context length is N tokens; the request needs P + M". The protocol does
/// not tokenize: the server calls this after tokenizing. Overflow-safe for any int64 inputs >= 0.
/// @param param the field to blame, "max_tokens" or "generation_config.max_new_tokens".
void check_context_length(int64_t context_length, int64_t prompt_tokens, int64_t max_new_tokens,
                          const std::string& param = "max_tokens");

}  // namespace servelab
