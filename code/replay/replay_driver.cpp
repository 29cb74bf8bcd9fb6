// The replay driver (see replay_driver.h).
#include "replay/replay_driver.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "client/client.h"
#include "common/error.h"

namespace servelab {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

/// Sends one request, streaming, and records its timing.
RequestTiming send_one(const ServelabClient& client, const TraceRequest& request,
                       const std::string& prompt, Clock::time_point start,
                       std::atomic<int64_t>& tokens_seen) {
  RequestTiming timing;
  const nlohmann::json body = {{"prompt", prompt},
                               {"stream", true},
                               {"generation_config",
                                {{"max_new_tokens", std::max<int64_t>(1, request.output_tokens)},
                                 {"min_new_tokens", std::max<int64_t>(1, request.output_tokens)},
                                 {"ignore_eos", true}}}};
  timing.sent = seconds_between(start, Clock::now());
  bool done = false;
  const ClientAnswer answer = client.post_stream("/generate", body, [&](const std::string& data) {
    const double now = seconds_between(start, Clock::now());
    if (data == "[DONE]") {
      done = true;
      return true;
    }
    const nlohmann::json chunk = nlohmann::json::parse(data, nullptr, false);
    if (!chunk.is_object()) return true;
    if (chunk.contains("error")) {
      timing.ok = false;
      timing.error = chunk["error"].value("code", "stream_error");
      return true;
    }
    if (chunk.contains("usage") && chunk["usage"].is_object())
      timing.output_tokens = chunk["usage"].value("completion_tokens", int64_t{0});
    for (const auto& choice : chunk.value("choices", nlohmann::json::array())) {
      if (choice.contains("text") && choice["text"].is_string() &&
          !choice["text"].get<std::string>().empty()) {
        timing.chunk_times.push_back(now);
        tokens_seen += 1;
      }
    }
    return true;
  });
  timing.finished = seconds_between(start, Clock::now());
  if (answer.status == -1) {
    timing.ok = false;
    timing.error = "connection";
  } else if (answer.status != 200) {
    timing.ok = false;
    timing.error = std::to_string(answer.status);
  } else if (!done && timing.ok) {
    timing.ok = false;
    timing.error = "incomplete_stream";
  }
  return timing;
}

}  // namespace

double prometheus_value(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.compare(0, series.size(), series) != 0) continue;
    const std::string rest = line.substr(series.size());
    if (rest.empty() || rest[0] != ' ') continue;  // a longer name, or labels not asked for
    try {
      return std::stod(rest.substr(1));
    } catch (const std::exception&) {
      return -1;
    }
  }
  return -1;
}

ReplayResult replay_trace(const std::vector<TraceRequest>& trace,
                          const std::function<std::string(size_t)>& prompt_of,
                          const ReplayOptions& options) {
  const ServelabClient client(options.url, options.api_key);
  ReplayResult result;
  result.timings.resize(trace.size());
  const Clock::time_point start = Clock::now();
  std::atomic<int64_t> sent{0}, finished{0}, tokens{0};
  std::atomic<bool> over{false};
  std::mutex mutex;
  std::condition_variable changed;
  int64_t in_flight = 0;

  // /metrics once an interval, and the progress callback twice a second.
  std::thread observer([&] {
    double next_scrape = 0;
    while (!over) {
      const double now = seconds_between(start, Clock::now());
      if (options.scrape_interval_seconds > 0 && now >= next_scrape) {
        next_scrape = now + options.scrape_interval_seconds;
        const ClientAnswer metrics = client.get("/metrics");
        if (metrics.status == 200) {
          ServerSample sample;
          sample.time = now;
          sample.running = prometheus_value(metrics.body, "servelab_requests_running");
          sample.waiting = prometheus_value(metrics.body, "servelab_requests_waiting");
          sample.swapped = prometheus_value(metrics.body, "servelab_requests_swapped");
          sample.kv_usage = prometheus_value(metrics.body, "servelab_kv_cache_usage_ratio");
          std::lock_guard<std::mutex> lock(mutex);
          result.samples.push_back(sample);
        }
      }
      if (options.progress) options.progress(sent, finished, tokens, now);
      std::unique_lock<std::mutex> lock(mutex);
      changed.wait_for(lock, std::chrono::milliseconds(500), [&] { return over.load(); });
    }
  });

  auto run = [&](size_t i) {
    result.timings[i] = send_one(client, trace[i], prompt_of(i), start, tokens);
    finished += 1;
    std::lock_guard<std::mutex> lock(mutex);
    in_flight -= 1;
    changed.notify_all();
  };
  std::vector<std::thread> threads;
  const int64_t limit = options.concurrency > 0 ? options.concurrency : options.max_in_flight;
  for (size_t i = 0; i < trace.size(); ++i) {
    if (options.concurrency == 0) {
      // Open loop: at the trace's time, whatever is still running.
      std::this_thread::sleep_until(start +
                                    std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(trace[i].arrival_seconds)));
    }
    {
      std::unique_lock<std::mutex> lock(mutex);
      changed.wait(lock, [&] { return in_flight < limit; });
      in_flight += 1;
    }
    sent += 1;
    threads.emplace_back(run, i);
  }
  for (std::thread& thread : threads) thread.join();
  result.duration_seconds = seconds_between(start, Clock::now());
  over = true;
  changed.notify_all();
  observer.join();
  return result;
}

}  // namespace servelab
