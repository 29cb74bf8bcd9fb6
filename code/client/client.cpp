// The servelab HTTP client (see client.h).
#include "client/client.h"

#include <httplib.h>

#include "client/balancer_config.h"
#include "common/error.h"

namespace servelab {

bool feed_sse(std::string& buffer, const std::string& chunk,
              const std::function<bool(const std::string& data)>& on_event) {
  buffer += chunk;
  size_t end;
  while ((end = buffer.find("\n\n")) != std::string::npos) {
    const std::string event = buffer.substr(0, end);
    buffer.erase(0, end + 2);
    // An event may have several lines; only `data:` ones carry a payload here.
    size_t start = 0;
    std::string data;
    while (start <= event.size()) {
      size_t line_end = event.find('\n', start);
      if (line_end == std::string::npos) line_end = event.size();
      const std::string line = event.substr(start, line_end - start);
      if (line.rfind("data:", 0) == 0) {
        std::string payload = line.substr(5);
        if (!payload.empty() && payload[0] == ' ') payload.erase(0, 1);
        data += (data.empty() ? "" : "\n") + payload;
      }
      start = line_end + 1;
    }
    if (!data.empty() && !on_event(data)) return false;
  }
  return true;
}

ServelabClient::ServelabClient(const std::string& url, std::string api_key,
                               std::chrono::seconds read_timeout)
    : api_key_(std::move(api_key)), read_timeout_(read_timeout) {
  const ServerEntry entry = parse_server_url(url);
  host_ = entry.host;
  port_ = entry.port;
}

namespace {

httplib::Headers headers_for(const std::string& api_key) {
  httplib::Headers headers;
  if (!api_key.empty()) headers.emplace("Authorization", "Bearer " + api_key);
  return headers;
}

ClientAnswer answer_of(const httplib::Result& result) {
  ClientAnswer answer;
  if (!result) {
    answer.error = httplib::to_string(result.error());
    return answer;
  }
  answer.status = result->status;
  answer.body = result->body;
  return answer;
}

}  // namespace

ClientAnswer ServelabClient::get(const std::string& path) const {
  httplib::Client client(host_, port_);
  client.set_read_timeout(read_timeout_);
  return answer_of(client.Get(path.c_str(), headers_for(api_key_)));
}

ClientAnswer ServelabClient::post(const std::string& path, const nlohmann::json& body) const {
  httplib::Client client(host_, port_);
  client.set_read_timeout(read_timeout_);
  return answer_of(
      client.Post(path.c_str(), headers_for(api_key_), body.dump(), "application/json"));
}

ClientAnswer ServelabClient::post_stream(
    const std::string& path, const nlohmann::json& body,
    const std::function<bool(const std::string& data)>& on_event) const {
  httplib::Client client(host_, port_);
  client.set_read_timeout(read_timeout_);
  httplib::Request request;
  request.method = "POST";
  request.path = path;
  request.headers = headers_for(api_key_);
  request.set_header("Content-Type", "application/json");
  request.body = body.dump();
  ClientAnswer answer;
  std::string buffer;
  int status = 0;
  request.response_handler = [&](const httplib::Response& response) {
    status = response.status;
    return true;
  };
  request.content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
    const std::string chunk(data, length);
    answer.body += chunk;
    if (status != 200) return true;
    return feed_sse(buffer, chunk, on_event);
  };
  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  if (!client.send(request, response, error) && status == 0) {
    answer.error = httplib::to_string(error);
    return answer;
  }
  answer.status = status;
  return answer;
}

}  // namespace servelab
