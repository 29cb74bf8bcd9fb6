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

Clock::duration duration_of(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

/// The real sender environment: steady_clock time since `start`, and one thread per request,
/// which runs `send(index)`. Only the sending thread calls its methods.
class ThreadPerRequest final : public SenderEnvironment {
 public:
  ThreadPerRequest(Clock::time_point start, std::function<void(size_t)> send)
      : start_(start), send_(std::move(send)) {}
  ~ThreadPerRequest() override { join_all(); }

  double now() override { return seconds_between(start_, Clock::now()); }
  void sleep_until(double seconds) override {
    std::this_thread::sleep_until(start_ + duration_of(seconds));
  }
  void wait_until_in_flight_below(int64_t limit) override {
    std::unique_lock<std::mutex> lock(mutex_);
    answered_.wait(lock, [&] { return in_flight_ < limit; });
  }
  void launch(size_t index) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_flight_ += 1;
    }
    launched_ += 1;
    threads_.emplace_back([this, index] {
      send_(index);
      std::lock_guard<std::mutex> lock(mutex_);
      in_flight_ -= 1;
      answered_.notify_all();
    });
  }

  int64_t launched() const { return launched_; }
  /// Waits for the answer of every request launched so far.
  void join_all() {
    for (std::thread& thread : threads_)
      if (thread.joinable()) thread.join();
  }

 private:
  const Clock::time_point start_;
  const std::function<void(size_t)> send_;
  std::mutex mutex_;
  std::condition_variable answered_;
  int64_t in_flight_ = 0;
  std::atomic<int64_t> launched_{0};  // read by the progress thread
  std::vector<std::thread> threads_;
};

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

void send_open_loop(const std::vector<double>& arrival_seconds, int64_t max_in_flight,
                    SenderEnvironment& environment) {
  // BEGIN LAB(lab09-open-loop)
  for (size_t i = 0; i < arrival_seconds.size(); ++i) {
    // The trace's time since the start, not a gap since the previous send: a request that the
    // bound held back does not push the later ones back.
    environment.sleep_until(arrival_seconds[i]);
    // Never wait for an answer (that would be a closed loop at the server's pace), except for
    // the client's own bound.
    environment.wait_until_in_flight_below(max_in_flight);
    environment.launch(i);
  }
  // END LAB
}

void send_closed_loop(size_t count, int64_t concurrency, SenderEnvironment& environment) {
  for (size_t i = 0; i < count; ++i) {
    environment.wait_until_in_flight_below(concurrency);
    environment.launch(i);
  }
}

ReplayResult replay_trace(const std::vector<TraceRequest>& trace,
                          const std::function<std::string(size_t)>& prompt_of,
                          const ReplayOptions& options) {
  const ServelabClient client(options.url, options.api_key);
  // Either would wait forever for a free slot.
  if (options.concurrency < 0)
    fail("replay: concurrency must be 0 (open loop) or more (closed loop), got ",
         options.concurrency);
  if (options.concurrency == 0 && options.max_in_flight < 1)
    fail("replay: max_in_flight must be at least 1 in open loop, got ", options.max_in_flight);
  ReplayResult result;
  result.timings.resize(trace.size());
  const Clock::time_point start = Clock::now();
  std::atomic<int64_t> finished{0}, tokens{0};
  ThreadPerRequest sender(start, [&](size_t i) {
    result.timings[i] = send_one(client, trace[i], prompt_of(i), start, tokens);
    finished += 1;
  });

  // /metrics once an interval, and the progress callback twice a second.
  std::mutex mutex;  // guards over and result.samples
  std::condition_variable changed;
  bool over = false;
  std::thread observer([&] {
    double next_scrape = 0;
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (over) return;
      }
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
      if (options.progress) options.progress(sender.launched(), finished, tokens, now);
      std::unique_lock<std::mutex> lock(mutex);
      changed.wait_for(lock, std::chrono::milliseconds(500), [&] { return over; });
    }
  });
  // Stops the observer on every way out, so that an exception from a sender (a lab stub
  // included) reaches the caller rather than std::terminate.
  auto stop_observer = [&] {
    {
      std::lock_guard<std::mutex> lock(mutex);
      over = true;
    }
    changed.notify_all();
    observer.join();
  };

  try {
    if (options.concurrency > 0) {
      send_closed_loop(trace.size(), options.concurrency, sender);
    } else {
      std::vector<double> arrival_seconds;
      arrival_seconds.reserve(trace.size());
      for (const TraceRequest& request : trace) arrival_seconds.push_back(request.arrival_seconds);
      send_open_loop(arrival_seconds, options.max_in_flight, sender);
    }
  } catch (...) {
    sender.join_all();
    stop_observer();
    throw;
  }
  sender.join_all();
  result.duration_seconds = seconds_between(start, Clock::now());
  stop_observer();
  return result;
}

}  // namespace servelab
