// The BurstGPT and Mooncake trace loaders (see trace.h).
#include <fstream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "replay/text_fields.h"
#include "replay/trace.h"

namespace servelab {
namespace {

std::ifstream open_trace(const std::string& path, const char* where_to_get) {
  std::ifstream file(path, std::ios::binary);
  if (!file) fail(path, ": cannot open the trace file. ", where_to_get);
  return file;
}

/// Arrival times relative to the first request, which must not go back in time.
void add_request(std::vector<TraceRequest>& requests, TraceRequest request, double absolute,
                 double& first, double& previous, const std::string& path, int64_t line) {
  if (requests.empty()) {
    first = absolute;
  } else if (absolute < previous) {
    fail(path, ":", line, ": the timestamp ", absolute, " is earlier than the previous request's (",
         previous, "); the requests must be in time order");
  }
  previous = absolute;
  request.arrival_seconds = absolute - first;
  requests.push_back(std::move(request));
}

}  // namespace

std::vector<TraceRequest> load_burstgpt_trace(const std::string& path, int64_t max_requests,
                                              const std::string& model) {
  if (max_requests < 0) fail(path, ": max_requests must be >= 0 (0 reads all)");
  CsvTraceReader reader(
      path, {"Timestamp", "Model", "Request tokens", "Response tokens"},
      "BurstGPT's header Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type",
      "Download BurstGPT from https://github.com/HPMLL/BurstGPT (data/BurstGPT_1.csv)");
  std::vector<TraceRequest> requests;
  double first = 0, previous = 0;
  std::vector<std::string_view> fields;  // Timestamp, Model, Request tokens, Response tokens
  while (!(max_requests > 0 && static_cast<int64_t>(requests.size()) == max_requests) &&
         reader.next(fields)) {
    const int64_t line_number = reader.line_number();
    double timestamp = 0;
    if (!parse_number(fields[0], timestamp) || timestamp < 0)
      fail(path, ":", line_number, ": Timestamp '", fields[0], "' is not a number of seconds >= 0");
    TraceRequest request;
    if (!parse_count(fields[2], request.prompt_tokens))
      fail(path, ":", line_number, ": Request tokens '", fields[2], "' is not a whole number >= 0");
    if (!parse_count(fields[3], request.output_tokens))
      fail(path, ":", line_number, ": Response tokens '", fields[3],
           "' is not a whole number >= 0");
    if (!model.empty() && fields[1] != model) continue;
    if (request.prompt_tokens == 0) continue;  // a failed request in the published trace
    add_request(requests, std::move(request), timestamp, first, previous, path, line_number);
  }
  return requests;
}

std::vector<TraceRequest> load_mooncake_trace(const std::string& path, int64_t max_requests) {
  if (max_requests < 0) fail(path, ": max_requests must be >= 0 (0 reads all)");
  std::ifstream file = open_trace(path,
                                  "Download a Mooncake trace from "
                                  "https://github.com/kvcache-ai/Mooncake (mooncake_trace.jsonl)");
  std::vector<TraceRequest> requests;
  double first = 0, previous = 0;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(file, line)) {
    ++line_number;
    if (trim(line).empty() || trim(line) == "\r") continue;
    if (max_requests > 0 && static_cast<int64_t>(requests.size()) == max_requests) break;
    const nlohmann::json row = nlohmann::json::parse(line, nullptr, false);
    auto bad = [&](const std::string& what) {
      fail(path, ":", line_number, ": ", what,
           " (expected {\"timestamp\": ms, \"input_length\": N, \"output_length\": M, "
           "\"hash_ids\": [...]})");
    };
    if (row.is_discarded() || !row.is_object()) bad("not a JSON object");
    if (!row.contains("timestamp") || !row["timestamp"].is_number() ||
        row["timestamp"].get<double>() < 0)
      bad("'timestamp' is missing or not a number of milliseconds >= 0");
    if (!row.contains("input_length") || !row["input_length"].is_number_integer() ||
        row["input_length"].get<int64_t>() < 1)
      bad("'input_length' is missing or not a whole number >= 1");
    if (!row.contains("output_length") || !row["output_length"].is_number_integer() ||
        row["output_length"].get<int64_t>() < 0)
      bad("'output_length' is missing or not a whole number >= 0");
    TraceRequest request;
    request.prompt_tokens = row["input_length"].get<int64_t>();
    request.output_tokens = row["output_length"].get<int64_t>();
    if (row.contains("hash_ids")) {
      if (!row["hash_ids"].is_array()) bad("'hash_ids' is not a list");
      for (const auto& id : row["hash_ids"]) {
        if (!id.is_number_integer()) bad("'hash_ids' holds a value that is not an integer");
        request.hash_ids.push_back(id.get<int64_t>());
      }
    }
    add_request(requests, std::move(request), row["timestamp"].get<double>() / 1000.0, first,
                previous, path, line_number);
  }
  return requests;
}

}  // namespace servelab
