#include "protocol/protocol_error.h"

#include <utility>

namespace servelab {

ProtocolError::ProtocolError(int status, std::string type, const std::string& message,
                             std::string param, std::string code)
    : Error(message),
      status_(status),
      type_(std::move(type)),
      param_(std::move(param)),
      code_(std::move(code)) {}

ProtocolError ProtocolError::invalid_request(const std::string& message, const std::string& param,
                                             const std::string& code) {
  return ProtocolError(400, "invalid_request_error", message, param, code);
}

ProtocolError ProtocolError::model_not_found(const std::string& requested,
                                             const std::string& served) {
  return ProtocolError(
      404, "invalid_request_error",
      str_cat("The model '", requested, "' does not exist; this server serves '", served, "'"),
      "model", "model_not_found");
}

ProtocolError ProtocolError::route_not_found(const std::string& method, const std::string& path) {
  return ProtocolError(404, "invalid_request_error",
                       str_cat("Unknown route: ", method, " ", path,
                               " (routes: POST /generate, POST /v1/completions, "
                               "POST /v1/chat/completions, GET /v1/models, GET /health, "
                               "GET /metrics)"),
                       "", "unknown_route");
}

ProtocolError ProtocolError::unauthorized() {
  return ProtocolError(401, "authentication_error",
                       "Missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                       "", "invalid_api_key");
}

ProtocolError ProtocolError::payload_too_large(uint64_t limit_bytes) {
  return ProtocolError(
      413, "invalid_request_error",
      str_cat("The request body is larger than this server's limit of ", limit_bytes, " bytes"), "",
      "payload_too_large");
}

ProtocolError ProtocolError::overloaded(int64_t max_requests_in_system) {
  return ProtocolError(429, "rate_limit_error",
                       str_cat("The server is at its limit of ", max_requests_in_system,
                               " requests in flight; retry later"),
                       "", "server_overloaded");
}

ProtocolError ProtocolError::unavailable(const std::string& reason) {
  return ProtocolError(503, "server_error", str_cat("The server is unavailable: ", reason), "",
                       "service_unavailable");
}

ProtocolError ProtocolError::internal(const std::string& message) {
  return ProtocolError(500, "server_error", message, "", "internal_error");
}

void check_context_length(int64_t context_length, int64_t prompt_tokens, int64_t max_new_tokens,
                          const std::string& param) {
  // p + m > n, written so that it cannot overflow: every value is >= 0 here.
  const bool too_long =
      prompt_tokens > context_length || max_new_tokens > context_length - prompt_tokens;
  if (too_long) {
    throw ProtocolError::invalid_request(
        str_cat("This model's maximum context length is ", context_length,
                " tokens; the request needs ", prompt_tokens, " + ", max_new_tokens),
        param, "context_length_exceeded");
  }
}

}  // namespace servelab
