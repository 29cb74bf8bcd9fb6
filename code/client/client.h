// A small C++ client of the servelab HTTP API (servers and the balancer), on cpp-httplib: whole
// answers, and streams read as server-sent events, each `data:` payload handed over as it
// arrives. For the CLI and the trace replay; it knows the wire format, not the engines.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace servelab {

struct ClientAnswer {
  int status = -1;    ///< the HTTP status; -1 when the server could not be reached
  std::string body;   ///< the whole body (for streams: everything received, events included)
  std::string error;  ///< why it could not be reached (with status -1)
};

class ServelabClient {
 public:
  /// @param url "http://host:port"; throws servelab::Error for anything else.
  explicit ServelabClient(const std::string& url, std::string api_key = "",
                          std::chrono::seconds read_timeout = std::chrono::seconds(600));

  ClientAnswer get(const std::string& path) const;
  ClientAnswer post(const std::string& path, const nlohmann::json& body) const;
  /// A streaming request: `on_event` gets each SSE `data:` payload (the JSON text, or "[DONE]")
  /// as soon as its event is complete; returning false hangs up (the server then aborts the
  /// request). Non-200 answers are not events: their body is in the result.
  ClientAnswer post_stream(const std::string& path, const nlohmann::json& body,
                           const std::function<bool(const std::string& data)>& on_event) const;

 private:
  std::string host_;
  int port_ = 0;
  std::string api_key_;
  std::chrono::seconds read_timeout_;
};

/// Splits SSE text into `data:` payloads: appends `chunk` to `buffer` and calls `on_event` for
/// every complete event ("data: ...\n\n") in it, leaving a partial event in `buffer`. Returns
/// false as soon as `on_event` does.
bool feed_sse(std::string& buffer, const std::string& chunk,
              const std::function<bool(const std::string& data)>& on_event);

}  // namespace servelab
