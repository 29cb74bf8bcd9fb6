// servelab_bench_kv_waste: how much KV-cache memory a real trace leaves allocated but unused,
// paged (the BlockManager, blocks of 8/16/32 tokens) against the naive contiguous reservation of
// max_length slots per request. CPU only: it counts slots, it allocates no KV memory.
//
//   servelab_bench_kv_waste --trace AzureLLMInferenceTrace_conv.csv [--requests 2000]
//       [--max-length 4096] [--block-sizes 8,16,32] [--seconds-per-token 0.02] [--tick 0.1]
//       [--kv-budget-gib 40] [--out results.json] [--markdown results.md]
//
// Two replays of the first N requests' lengths (the trace has no text):
//  - per request: each request alone, prompt allocated then one slot per generated token, the
//    waste summed over its decode steps (time-weighted) and taken at its end;
//  - concurrent: requests arrive at their trace times and each generates a token every
//    --seconds-per-token; all live requests' memory is sampled every --tick.
// Contiguous reservations of 2048, 4096 and 8192 (and --max-length) are reported; a request
// longer than the reservation is counted as rejected and left out of that scheme only.
// The trace: Azure LLM inference trace 2023, https://github.com/Azure/AzurePublicDataset
// (data/AzureLLMInferenceTrace_conv.csv), CC-BY 4.0, Patel et al., "Splitwise", ISCA 2024.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "kv_waste_model.h"
#include "replay/azure_trace.h"

namespace servelab {
namespace {

// Llama-3-8B's KV shape: 32 layers x 8 KV heads x 128 head_dim x 2 (keys, values) x 2 bytes.
constexpr int64_t kBytesPerToken = 32 * 8 * 128 * 2 * 2;  // 128 KiB
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

struct Options {
  std::string trace;
  int64_t requests = 2000;
  int64_t max_length = 4096;
  std::vector<int64_t> block_sizes = {8, 16, 32};
  double seconds_per_token = 0.020;
  double tick_seconds = 0.100;
  double timeline_stride_seconds = 1.0;
  double kv_budget_gib = 40;
  std::string out, markdown;
  std::string command;
};

const char* const kUsage =
    "usage: servelab_bench_kv_waste --trace FILE [--requests 2000] [--max-length 4096]\n"
    "         [--block-sizes 8,16,32] [--seconds-per-token 0.02] [--tick 0.1]\n"
    "         [--timeline-stride 1.0] [--kv-budget-gib 40] [--out FILE.json] [--markdown FILE.md]\n"
    "The trace: data/AzureLLMInferenceTrace_conv.csv of "
    "https://github.com/Azure/AzurePublicDataset\n";

int64_t parse_int(const std::string& name, const std::string& text) {
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) fail("--", name, " must be an integer, got '", text, "'");
  return value;
}

double parse_double(const std::string& name, const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(value)) {
    fail("--", name, " must be a number, got '", text, "'");
  }
  return value;
}

Options parse_options(int argc, char** argv) {
  Options options;
  options.command = "servelab_bench_kv_waste";
  for (int i = 1; i < argc; ++i) options.command += str_cat(" ", argv[i]);
  for (int i = 1; i < argc; ++i) {
    const std::string name = argv[i];
    if (name == "--help" || name == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (i + 1 >= argc) fail("option ", name, " needs a value\n", kUsage);
    const std::string value = argv[++i];
    if (name == "--trace") {
      options.trace = value;
    } else if (name == "--requests") {
      options.requests = parse_int("requests", value);
    } else if (name == "--max-length") {
      options.max_length = parse_int("max-length", value);
    } else if (name == "--block-sizes") {
      options.block_sizes.clear();
      std::stringstream list(value);
      std::string item;
      while (std::getline(list, item, ',')) {
        options.block_sizes.push_back(parse_int("block-sizes", item));
      }
    } else if (name == "--seconds-per-token") {
      options.seconds_per_token = parse_double("seconds-per-token", value);
    } else if (name == "--tick") {
      options.tick_seconds = parse_double("tick", value);
    } else if (name == "--timeline-stride") {
      options.timeline_stride_seconds = parse_double("timeline-stride", value);
    } else if (name == "--kv-budget-gib") {
      options.kv_budget_gib = parse_double("kv-budget-gib", value);
    } else if (name == "--out") {
      options.out = value;
    } else if (name == "--markdown") {
      options.markdown = value;
    } else {
      fail("unknown option ", name, "\n", kUsage);
    }
  }
  if (options.trace.empty()) fail("--trace is required\n", kUsage);
  if (options.requests < 0) fail("--requests must be >= 0 (0: all), got ", options.requests);
  if (options.max_length < 1) fail("--max-length must be >= 1, got ", options.max_length);
  if (options.block_sizes.empty()) fail("--block-sizes needs at least one size");
  for (int64_t size : options.block_sizes) {
    if (size < 1) fail("--block-sizes must be >= 1, got ", size);
  }
  if (!(options.seconds_per_token > 0) || !(options.tick_seconds > 0) ||
      !(options.timeline_stride_seconds > 0) || !(options.kv_budget_gib > 0)) {
    fail("--seconds-per-token, --tick, --timeline-stride and --kv-budget-gib must be > 0");
  }
  return options;
}

/// Rounded to `digits` decimals: the JSON keeps what a reader can use, not 17 digits.
double rounded(double value, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::round(value * scale) / scale;
}

double gib(double slots) {
  return slots * static_cast<double>(kBytesPerToken) / kGiB;
}
double percent(double fraction) {
  return 100.0 * fraction;
}

std::string fixed(double value, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << value;
  return out.str();
}

std::string today_utc() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[16];
  std::strftime(text, sizeof(text), "%Y-%m-%d", &utc);
  return text;
}

/// "Intel(R) Xeon(R) Processor, 2 hardware threads" (Linux): the benchmark needs no GPU.
std::string machine_description() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return str_cat(model, ", ", std::thread::hardware_concurrency(), " hardware threads");
}

/// Percentiles and counts of the replayed lengths, for the reader to judge the trace.
nlohmann::ordered_json length_summary(std::vector<int64_t> values) {
  std::sort(values.begin(), values.end());
  if (values.empty()) return nlohmann::ordered_json::object();
  double sum = 0;
  for (int64_t value : values) sum += static_cast<double>(value);
  auto at = [&](double quantile) {
    return values[std::min(values.size() - 1, static_cast<size_t>(quantile * values.size()))];
  };
  return {{"mean", std::round(10 * sum / values.size()) / 10},
          {"p50", at(0.5)},
          {"p90", at(0.9)},
          {"p99", at(0.99)},
          {"min", values.front()},
          {"max", values.back()}};
}

/// Indented JSON, except that each array of numbers stays on one line: the timeline's thousands
/// of samples would otherwise take a line each.
std::string readable_dump(const nlohmann::ordered_json& value, int depth = 0) {
  const bool flat_array = value.is_array() && std::all_of(value.begin(), value.end(),
                                                          [](auto& v) { return v.is_primitive(); });
  if (!value.is_structured() || flat_array || value.empty()) return value.dump();
  const std::string indent(2 * (depth + 1), ' ');
  std::string text = value.is_object() ? "{\n" : "[\n";
  bool first = true;
  for (auto item = value.begin(); item != value.end(); ++item) {
    if (!first) text += ",\n";
    first = false;
    text += indent;
    if (value.is_object()) text += nlohmann::ordered_json(item.key()).dump() + ": ";
    text += readable_dump(item.value(), depth + 1);
  }
  text += "\n" + std::string(2 * depth, ' ') + (value.is_object() ? "}" : "]");
  return depth == 0 ? text + "\n" : text;
}

std::string describe(const nlohmann::ordered_json& summary) {
  return str_cat("mean ", summary["mean"].get<double>(), ", median ", summary["p50"].get<int64_t>(),
                 ", p99 ", summary["p99"].get<int64_t>(), ", max ", summary["max"].get<int64_t>());
}

std::vector<KvScheme> schemes_of(const Options& options) {
  std::vector<KvScheme> schemes;
  for (int64_t size : options.block_sizes) schemes.push_back(KvScheme::paged(size));
  std::vector<int64_t> lengths = {2048, 4096, 8192, options.max_length};
  std::sort(lengths.begin(), lengths.end());
  lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  for (int64_t length : lengths) schemes.push_back(KvScheme::contiguous(length));
  return schemes;
}

/// One sentence comparing blocks of 16 (or the first paged scheme) with the contiguous
/// --max-length reservation in the concurrent replay.
std::string headline(const std::vector<KvScheme>& schemes,
                     const std::vector<ConcurrentWaste>& concurrent, const Options& options) {
  const ConcurrentWaste* paged = nullptr;
  const ConcurrentWaste* naive = nullptr;
  for (size_t s = 0; s < schemes.size(); ++s) {
    const bool is_paged = schemes[s].kind == KvScheme::Kind::kPaged;
    if (is_paged && (paged == nullptr || schemes[s].block_size == 16)) paged = &concurrent[s];
    if (!is_paged && schemes[s].max_length == options.max_length) naive = &concurrent[s];
  }
  if (paged == nullptr || naive == nullptr || paged->allocated_slots_per_live_request() <= 0) {
    return "";
  }
  const double paged_mib = gib(paged->allocated_slots_per_live_request()) * 1024;
  const double naive_mib = gib(naive->allocated_slots_per_live_request()) * 1024;
  return str_cat(
      "In the concurrent replay a live request holds on average ", fixed(paged_mib, 0),
      " MiB of KV memory with ", paged->scheme, " against the ", fixed(naive_mib, 0), " MiB that ",
      naive->scheme, " reserves (", fixed(percent(naive->waste_fraction()), 1),
      " % of it unused; it must also reject ", naive->rejected_requests, " of the ",
      naive->requests + naive->rejected_requests, " requests): ", fixed(naive_mib / paged_mib, 1),
      "x as many requests fit in the same memory.");
}

/// The markdown report: what was run where, on what, the tables, and how to read them.
void write_markdown(const Options& options, const nlohmann::ordered_json& json,
                    const std::string& tables, const std::string& headline) {
  const nlohmann::ordered_json& trace = json["trace"];
  std::string plots;
  if (!options.out.empty()) {
    std::string stem = options.out.substr(options.out.find_last_of('/') + 1);
    if (stem.size() > 5 && stem.substr(stem.size() - 5) == ".json") stem.resize(stem.size() - 5);
    plots = str_cat("Plots (`python3 benchmarks/plot_kv_waste.py ", options.out, "`):\n\n![waste](",
                    stem, "-percent.svg)\n![timeline](", stem, "-timeline.svg)\n\n");
  }
  std::ofstream file(options.markdown);
  file << "# KV-cache memory waste: paged blocks vs contiguous reservation\n\n"
       << "- Date: " << json["date"].get<std::string>() << "\n"
       << "- Machine: " << json["machine"].get<std::string>()
       << " (CPU only: the benchmark counts slots and allocates no KV memory)\n"
       << "- Command: `" << options.command << "`\n"
       << "- Trace: the first " << trace["requests"].get<int64_t>()
       << " requests (lengths and arrival times only) of the Azure LLM inference trace 2023, "
          "conversation service ("
       << fixed(trace["span_seconds"].get<double>(), 0)
       << " s of arrivals). Azure Public Dataset, https://github.com/Azure/AzurePublicDataset, "
          "`data/AzureLLMInferenceTrace_conv.csv`; CC-BY 4.0; Patel et al., \"Splitwise: "
          "Efficient generative LLM inference using phase splitting\", ISCA 2024. servelab "
          "does not ship the trace.\n"
       << "- A slot holds one token's keys and values for every layer: 128 KiB for "
          "Llama-3-8B (32 layers x 8 KV heads x 128 x 2 (K, V) x 2 bytes).\n\n"
       << headline << "\n\n"
       << "Waste = (allocated - used) / allocated. Paged schemes are the real `BlockManager` "
          "(blocks taken as a sequence grows); contiguous ones reserve max_length slots per "
          "request from its start, as a naive server does, and must reject a request whose "
          "prompt plus output exceeds max_length (counted, and left out of that scheme only, "
          "which is why its \"mean used\" is lower). A request of P prompt tokens and G output "
          "tokens lives G decode steps and holds P + k tokens in step k. The concurrent replay "
          "has no memory limit: it measures what the trace asks for, with no queueing or "
          "preemption.\n\n"
       << tables << "\n"
       << "\"Live requests in " << fixed(options.kv_budget_gib, 0)
       << " GiB\" divides that KV budget (roughly what an 80 GB GPU keeps for the cache after "
          "Llama-3-8B's 15 GiB of bf16 weights and the activations) by the mean allocation per "
          "live request: how many requests of this mix fit at once. For paged schemes it is an "
          "average; a server admitting that many would also keep headroom for growth.\n\n"
       << plots << "Trace lengths replayed (tokens): prompt " << describe(trace["prompt_tokens"])
       << "; output " << describe(trace["output_tokens"]) << "; prompt + output "
       << describe(trace["total_tokens"]) << ". " << trace["requests_at_max_output"].get<int64_t>()
       << " request(s) generated exactly " << trace["output_tokens"]["max"].get<int64_t>()
       << " tokens, the largest output.\n\n"
       << "A server that reserves prompt + the request's `max_tokens` instead of max_length "
          "cannot be replayed from this trace (it does not record `max_tokens`); it wastes the "
          "gap between `max_tokens` and the actual output for the request's whole life.\n";
  if (!file) fail(options.markdown, ": cannot write the markdown report");
  std::cerr << "kv_waste: wrote " << options.markdown << "\n";
}

int run(const Options& options) {
  const auto started = std::chrono::steady_clock::now();
  std::cerr << "kv_waste: reading " << options.trace << "\n";
  const std::vector<TraceRequest> requests = load_azure_trace(options.trace, options.requests);
  if (requests.empty()) fail(options.trace, ": the trace has no requests");
  if (options.requests > 0 && static_cast<int64_t>(requests.size()) < options.requests) {
    std::cerr << "kv_waste: the trace has only " << requests.size() << " requests\n";
  }
  std::vector<int64_t> prompts, outputs, totals;
  for (const TraceRequest& request : requests) {
    prompts.push_back(request.prompt_tokens);
    outputs.push_back(request.output_tokens);
    totals.push_back(request.prompt_tokens + request.output_tokens);
  }
  const int64_t max_output = *std::max_element(outputs.begin(), outputs.end());
  const int64_t at_max_output = std::count(outputs.begin(), outputs.end(), max_output);
  const double span = requests.back().arrival_seconds;
  std::cerr << "kv_waste: " << requests.size() << " requests over " << fixed(span, 1) << " s\n";

  const std::vector<KvScheme> schemes = schemes_of(options);
  nlohmann::ordered_json json;
  json["benchmark"] = "kv_waste";
  json["date"] = today_utc();
  json["machine"] = machine_description();
  json["command"] = options.command;
  json["trace"] = {
      {"file", options.trace.substr(options.trace.find_last_of('/') + 1)},
      {"source",
       "Azure LLM inference trace 2023 (conversation), Azure Public Dataset, "
       "https://github.com/Azure/AzurePublicDataset data/AzureLLMInferenceTrace_conv.csv"},
      {"license",
       "CC-BY 4.0; Patel et al., \"Splitwise: Efficient generative LLM inference "
       "using phase splitting\", ISCA 2024"},
      {"requests", requests.size()},
      {"span_seconds", std::round(span * 1000) / 1000},
      {"prompt_tokens", length_summary(prompts)},
      {"output_tokens", length_summary(outputs)},
      {"total_tokens", length_summary(totals)},
      {"requests_at_max_output", at_max_output}};
  json["settings"] = {{"block_sizes", options.block_sizes},
                      {"max_length", options.max_length},
                      {"seconds_per_token", options.seconds_per_token},
                      {"tick_seconds", options.tick_seconds},
                      {"timeline_stride_seconds", options.timeline_stride_seconds},
                      {"bytes_per_token", kBytesPerToken},
                      {"kv_shape", "Llama-3-8B: 32 layers x 8 KV heads x 128 x 2 (K,V) x 2 bytes"},
                      {"kv_budget_gib", options.kv_budget_gib}};

  // ---- each request alone, time-weighted over its decode steps ----
  std::vector<LifetimeWaste> lifetime;
  for (const KvScheme& scheme : schemes) {
    std::cerr << "kv_waste: per-request replay, " << scheme.name() << "\n";
    lifetime.push_back(measure_lifetime_waste(requests, scheme));
    const LifetimeWaste& waste = lifetime.back();
    json["per_request"].push_back(
        {{"scheme", waste.scheme},
         {"requests", waste.requests},
         {"rejected_requests", waste.rejected_requests},
         {"allocated_slot_steps", waste.allocated_slot_steps},
         {"used_slot_steps", waste.used_slot_steps},
         {"waste_fraction", rounded(waste.waste_fraction(), 6)},
         {"allocated_slots_at_end", waste.allocated_slots_at_end},
         {"used_slots_at_end", waste.used_slots_at_end},
         {"waste_fraction_at_end", rounded(waste.waste_fraction_at_end(), 6)},
         {"max_wasted_slots_at_end", waste.max_wasted_slots_at_end}});
  }

  // ---- all requests in time ----
  std::cerr << "kv_waste: concurrent replay, " << schemes.size() << " schemes, "
            << options.seconds_per_token * 1000 << " ms per token\n";
  ConcurrentOptions concurrent_options;
  concurrent_options.seconds_per_token = options.seconds_per_token;
  concurrent_options.tick_seconds = options.tick_seconds;
  const std::vector<ConcurrentWaste> concurrent =
      simulate_concurrent(requests, schemes, concurrent_options, [&](double now) {
        std::cerr << "kv_waste:   simulated " << fixed(now, 0) << " s of " << fixed(span, 0)
                  << "+ s\n";
      });
  const double budget_slots = options.kv_budget_gib * kGiB / static_cast<double>(kBytesPerToken);
  for (const ConcurrentWaste& result : concurrent) {
    const double per_live = result.allocated_slots_per_live_request();
    json["concurrent"].push_back(
        {{"scheme", result.scheme},
         {"requests", result.requests},
         {"rejected_requests", result.rejected_requests},
         {"mean_allocated_slots", std::round(result.mean_allocated_slots)},
         {"peak_allocated_slots", result.peak_allocated_slots},
         {"mean_used_slots", std::round(result.mean_used_slots)},
         {"peak_used_slots", result.peak_used_slots},
         {"mean_allocated_gib", rounded(gib(result.mean_allocated_slots), 3)},
         {"peak_allocated_gib", rounded(gib(static_cast<double>(result.peak_allocated_slots)), 3)},
         {"mean_used_gib", rounded(gib(result.mean_used_slots), 3)},
         {"waste_fraction", rounded(result.waste_fraction(), 6)},
         {"mean_live_requests", rounded(result.mean_live_requests, 3)},
         {"peak_live_requests", result.peak_live_requests},
         {"allocated_slots_per_live_request", rounded(per_live, 3)},
         {"live_requests_in_budget", per_live > 0 ? std::floor(budget_slots / per_live) : 0.0}});
  }
  // The timeline, thinned to one sample per stride (the means and peaks above use every tick).
  const int64_t stride =
      std::max<int64_t>(1, std::llround(options.timeline_stride_seconds / options.tick_seconds));
  nlohmann::ordered_json timeline;
  timeline["stride_seconds"] = static_cast<double>(stride) * options.tick_seconds;
  const size_t num_ticks = concurrent.front().samples.size();
  for (size_t s = 0; s < concurrent.size(); ++s) {
    std::vector<int64_t> allocated, used;
    for (size_t tick = 0; tick < num_ticks; tick += stride) {
      allocated.push_back(concurrent[s].samples[tick].allocated_slots);
      used.push_back(concurrent[s].samples[tick].used_slots);
    }
    timeline["allocated_slots"][concurrent[s].scheme] = allocated;
    // Every paged scheme holds the same tokens; keep one copy of "used".
    if (schemes[s].kind == KvScheme::Kind::kPaged && !timeline.contains("used_slots")) {
      timeline["used_slots"] = used;
    }
  }
  json["timeline"] = timeline;

  // ---- tables ----
  std::ostringstream tables;
  tables << "### Each request alone (waste summed over its decode steps)\n\n"
         << "| scheme | requests | rejected (too long) | waste, time-weighted | waste at end "
            "| worst request at end (slots) |\n"
         << "| --- | ---: | ---: | ---: | ---: | ---: |\n";
  for (const LifetimeWaste& waste : lifetime) {
    tables << "| " << waste.scheme << " | " << waste.requests << " | " << waste.rejected_requests
           << " | " << fixed(percent(waste.waste_fraction()), 2) << " % | "
           << fixed(percent(waste.waste_fraction_at_end()), 2) << " % | "
           << waste.max_wasted_slots_at_end << " |\n";
  }
  tables << "\n### All requests in time (" << fixed(options.seconds_per_token * 1000, 0)
         << " ms per token, sampled every " << fixed(options.tick_seconds * 1000, 0)
         << " ms; GiB for Llama-3-8B's 128 KiB per token)\n\n"
         << "| scheme | requests | mean allocated | peak allocated | mean used | waste "
            "| mean / peak live | allocated per live request | live requests in "
         << fixed(options.kv_budget_gib, 0) << " GiB |\n"
         << "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const ConcurrentWaste& result : concurrent) {
    const double per_live = result.allocated_slots_per_live_request();
    tables << "| " << result.scheme << " | " << result.requests << " | "
           << fixed(gib(result.mean_allocated_slots), 2) << " GiB | "
           << fixed(gib(static_cast<double>(result.peak_allocated_slots)), 2) << " GiB | "
           << fixed(gib(result.mean_used_slots), 2) << " GiB | "
           << fixed(percent(result.waste_fraction()), 1) << " % | "
           << fixed(result.mean_live_requests, 1) << " / " << result.peak_live_requests << " | "
           << fixed(per_live, 0) << " slots = " << fixed(gib(per_live) * 1024, 0) << " MiB | "
           << (per_live > 0 ? fixed(std::floor(budget_slots / per_live), 0) : "-") << " |\n";
  }
  std::cout << tables.str();

  if (!options.out.empty()) {
    std::ofstream file(options.out);
    file << readable_dump(json);
    if (!file) fail(options.out, ": cannot write the JSON results");
    std::cerr << "kv_waste: wrote " << options.out << "\n";
  }
  if (!options.markdown.empty()) {
    write_markdown(options, json, tables.str(), headline(schemes, concurrent, options));
  }
  std::cerr
      << "kv_waste: done in "
      << fixed(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), 1)
      << " s\n";
  return 0;
}

}  // namespace
}  // namespace servelab

int main(int argc, char** argv) {
  try {
    return servelab::run(servelab::parse_options(argc, argv));
  } catch (const servelab::Error& error) {
    std::cerr << "servelab_bench_kv_waste: " << error.what() << "\n";
    return 1;
  }
}
