// What the server is configured to accept, handed to the parsers so that validation can name the
// limit in its message. Plain values only; the server fills them from its config file and model.
#pragma once

#include <cstdint>
#include <string>

namespace servelab {

/// Limits and identity of the serving instance that requests are validated against.
struct ProtocolLimits {
  /// The model name requests must use ("model" field); anything else is 404 model_not_found.
  /// The native API may leave "model" out; the OpenAI APIs must send it, as OpenAI's do.
  std::string served_model_name = "servelab-stories";
  /// Largest `n` / `num_return_sequences` (sequences returned per request).
  int64_t max_return_sequences = 16;
  /// Largest `num_beams` (beam search runs on the continuous-batching server).
  int64_t max_num_beams = 8;
  /// Most stop strings per request, and the longest one in bytes.
  int64_t max_stop_sequences = 8;
  int64_t max_stop_length_bytes = 256;
  /// max_new_tokens when a chat completion request leaves out max_tokens. (OpenAI's chat default
  /// is "until the context is full"; the server may set this to its context length.)
  int64_t default_chat_max_tokens = 256;
};

}  // namespace servelab
