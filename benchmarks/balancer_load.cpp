// servelab_bench_balancer_load: a closed-loop synthetic load against one URL (a server or the
// balancer), for the balancer's policy comparison (benchmarks/balancer_compare.sh). C clients each
// send requests one after another until N are done; a share of them are long. Every request is
// greedy with ignore_eos, so its length is exactly its budget. Reports end-to-end latency
// percentiles and throughput as JSON (stdout or --json); progress on stderr.
//
//   servelab_bench_balancer_load --url URL [--requests N] [--concurrency C] [--long-share P]
//                                [--short-tokens S] [--long-tokens L] [--seed X] [--json FILE]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_cli.h"
#include "client/client.h"
#include "common/error.h"

namespace servelab {
namespace {

struct Options {
  std::string url;
  int64_t requests = 240, concurrency = 24, short_tokens = 16, long_tokens = 256;
  double long_share = 0.1;
  uint32_t seed = 1;
  std::string json_path;
};

Options parse(int argc, char** argv) {
  Options o;
  bench::parse_flags(argc, argv, 1, [&](const std::string& flag, const std::string& value) {
    if (flag == "--url")
      o.url = value;
    else if (flag == "--requests")
      o.requests = std::stoll(value);
    else if (flag == "--concurrency")
      o.concurrency = std::stoll(value);
    else if (flag == "--long-share")
      o.long_share = std::stod(value);
    else if (flag == "--short-tokens")
      o.short_tokens = std::stoll(value);
    else if (flag == "--long-tokens")
      o.long_tokens = std::stoll(value);
    else if (flag == "--seed")
      o.seed = static_cast<uint32_t>(std::stoul(value));
    else if (flag == "--json")
      o.json_path = value;
    else
      return false;
    return true;
  });
  if (o.url.empty()) fail("--url is required");
  return o;
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * values.size()));
  return values[index];
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  // Which requests are long is drawn once, so that every policy sees the same sequence.
  std::mt19937 random(o.seed);
  std::bernoulli_distribution is_long(o.long_share);
  std::vector<bool> long_request(static_cast<size_t>(o.requests));
  for (auto&& flag : long_request) flag = is_long(random);
  std::atomic<int64_t> next{0}, failures{0};
  std::mutex mutex;
  std::vector<double> short_latency, long_latency;
  const auto start = std::chrono::steady_clock::now();
  auto client_loop = [&] {
    ServelabClient client(o.url);
    while (true) {
      const int64_t i = next++;
      if (i >= o.requests) return;
      const bool is_long_one = long_request[static_cast<size_t>(i)];
      const nlohmann::json body = {
          {"prompt", "Once upon a time, there was a little fox who lived in the forest."},
          {"generation_config",
           {{"max_new_tokens", is_long_one ? o.long_tokens : o.short_tokens},
            {"ignore_eos", true}}}};
      const auto sent = std::chrono::steady_clock::now();
      const ClientAnswer answer = client.post("/generate", body);
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
      if (answer.status != 200) {
        failures += 1;
        continue;
      }
      std::lock_guard<std::mutex> lock(mutex);
      (is_long_one ? long_latency : short_latency).push_back(seconds);
      const size_t done = short_latency.size() + long_latency.size();
      if (done % 60 == 0)
        std::fprintf(stderr, "[load]   %zu/%lld\n", done, static_cast<long long>(o.requests));
    }
  };
  std::vector<std::thread> clients;
  for (int64_t c = 0; c < o.concurrency; ++c) clients.emplace_back(client_loop);
  for (std::thread& thread : clients) thread.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<double> all = short_latency;
  all.insert(all.end(), long_latency.begin(), long_latency.end());
  double mean = 0;
  for (double value : all) mean += value / static_cast<double>(std::max<size_t>(all.size(), 1));
  const nlohmann::json out = {{"url", o.url},
                              {"requests", o.requests},
                              {"concurrency", o.concurrency},
                              {"long_share", o.long_share},
                              {"short_tokens", o.short_tokens},
                              {"long_tokens", o.long_tokens},
                              {"failures", failures.load()},
                              {"seconds", seconds},
                              {"requests_per_second", static_cast<double>(all.size()) / seconds},
                              {"latency_mean_s", mean},
                              {"latency_p50_s", percentile(all, 0.5)},
                              {"latency_p90_s", percentile(all, 0.9)},
                              {"latency_p99_s", percentile(all, 0.99)},
                              {"short_latency_p50_s", percentile(short_latency, 0.5)},
                              {"short_latency_p90_s", percentile(short_latency, 0.9)},
                              {"long_latency_p50_s", percentile(long_latency, 0.5)}};
  std::fprintf(stderr, "[load] %.1f s, %.1f requests/s, p50 %.3f s, p90 %.3f s, p99 %.3f s\n",
               seconds, out["requests_per_second"].get<double>(), percentile(all, 0.5),
               percentile(all, 0.9), percentile(all, 0.99));
  bench::write_json(out, o.json_path);
  return failures.load() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace servelab

int main(int argc, char** argv) {
  return servelab::bench::bench_main("servelab_bench_balancer_load", argc, argv, servelab::run);
}
