// A traffic trace: when requests arrive and how long their prompts and answers are. The loaders
// (Azure, BurstGPT, Mooncake) and the synthetic generator produce it; the replay sends it. Lengths
// and times only: the published traces hold no text, and nothing here invents any.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace servelab {

/// One request of a trace.
struct TraceRequest {
  double arrival_seconds = 0;  ///< seconds after the first request of the file (first one: 0)
  int64_t prompt_tokens = 0;   ///< the prompt's length, >= 1
  int64_t output_tokens = 0;   ///< how many tokens the server generated, >= 0
  /// Mooncake only: ids of the prompt's blocks (of 512 tokens in the published trace); requests
  /// that share a leading run of ids share that prefix of their prompts.
  std::vector<int64_t> hash_ids;
};

/// Reads a BurstGPT trace (CSV with the header
/// `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`; Timestamp in seconds).
/// https://github.com/HPMLL/BurstGPT (CC-BY 4.0; Wang et al., "BurstGPT", 2024). Rows with 0
/// request tokens are skipped (failed requests in the published trace); `model` keeps only rows
/// of that model ("ChatGPT" or "GPT-4"), all when empty.
/// Throws servelab::Error naming the file and line for a missing column or a bad field, and for
/// timestamps that go back in time.
std::vector<TraceRequest> load_burstgpt_trace(const std::string& path, int64_t max_requests = 0,
                                              const std::string& model = "");

/// Reads a Mooncake trace (JSON lines: {"timestamp": ms, "input_length": N, "output_length": M,
/// "hash_ids": [...]}). https://github.com/kvcache-ai/Mooncake (Apache-2.0; Qin et al.,
/// "Mooncake", FAST 2025). Throws servelab::Error naming the file and line for a line that is not
/// such an object, and for timestamps that go back in time.
std::vector<TraceRequest> load_mooncake_trace(const std::string& path, int64_t max_requests = 0);

}  // namespace servelab
