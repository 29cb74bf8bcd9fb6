// The accounting behind benchmarks/kv_waste.cpp: how much KV-cache memory a trace of requests
// leaves allocated but unused, under paged allocation (the real BlockManager) and under the
// contiguous reservation of max_length slots per request that a naive server makes. Lengths and
// slot counts only: it never allocates KV memory or runs a model.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "block_manager/block_manager.h"
#include "replay/azure_trace.h"

namespace servelab {

/// How a server reserves KV slots (one slot holds one token's keys and values, all layers).
struct KvScheme {
  enum class Kind {
    kPaged,       ///< blocks of `block_size` slots, taken as the sequence grows (BlockManager)
    kContiguous,  ///< `max_length` slots per request from its start: the naive server
  };
  Kind kind = Kind::kPaged;
  int64_t block_size = 0;  ///< kPaged only
  int64_t max_length = 0;  ///< kContiguous only

  static KvScheme paged(int64_t block_size) { return {Kind::kPaged, block_size, 0}; }
  static KvScheme contiguous(int64_t max_length) { return {Kind::kContiguous, 0, max_length}; }
  /// "paged-16", "contiguous-4096".
  std::string name() const;
  /// Can the scheme run this request at all? A contiguous reservation cannot hold a request
  /// whose prompt plus output exceeds max_length: a naive server rejects it.
  bool admits(const TraceRequest& request) const;
};

/// Allocated and used slots at one moment.
struct SlotSample {
  int64_t allocated_slots = 0;
  int64_t used_slots = 0;  ///< tokens whose keys and values are held
};

/// The books of one scheme over a set of live requests. Paged schemes keep them in a real
/// BlockManager (no prefix caching, no swap space), so the numbers are the engine's own;
/// contiguous ones count max_length slots per live request.
///
/// The step model: a request of P prompt tokens that generates G tokens lives G decode steps.
/// `start` allocates its prompt; each step appends the slot of the token it generates, so in
/// step k (1..G) the request holds P + k tokens. (An engine writes a token's keys and values in
/// the step after the one that sampled it, so a real request holds one token fewer; over
/// hundreds of tokens per request that shifts nothing.)
class KvLedger {
 public:
  /// `pool_blocks`: the paged pool's size in blocks (ignored by contiguous schemes); it must
  /// hold every request live at once (see blocks_to_hold_all).
  KvLedger(const KvScheme& scheme, int64_t pool_blocks);
  ~KvLedger();
  KvLedger(const KvLedger&) = delete;
  KvLedger& operator=(const KvLedger&) = delete;

  const KvScheme& scheme() const { return scheme_; }
  /// Allocates the prompt. Throws servelab::Error if the request does not fit the scheme's
  /// max_length or the id is live.
  void start(int64_t id, int64_t prompt_tokens);
  /// One more generated token's slot. Throws servelab::Error past a contiguous max_length, or
  /// if the block manager's table disagrees with ceil(tokens / block_size) blocks.
  void append_token(int64_t id);
  /// Frees everything the request holds.
  void finish(int64_t id);

  SlotSample total() const { return {allocated_slots_, used_slots_}; }
  SlotSample of(int64_t id) const;
  int64_t live_requests() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  int64_t& tokens_of(int64_t id, const char* operation);

  KvScheme scheme_;
  std::unique_ptr<BlockManager> block_manager_;  ///< paged schemes only
  std::vector<int32_t> prompt_scratch_;          ///< token ids handed to allocate (never read)
  std::map<int64_t, int64_t> tokens_;            ///< live request -> tokens held
  int64_t allocated_slots_ = 0, used_slots_ = 0;
};

/// Blocks of `block_size` that hold every request of the trace at its full length at once: a
/// pool size with which a replay never runs out of blocks.
int64_t blocks_to_hold_all(const std::vector<TraceRequest>& requests, int64_t block_size);

/// The state after each decode step of one request alone (G samples for G generated tokens).
std::vector<SlotSample> request_step_samples(const TraceRequest& request, const KvScheme& scheme);

/// Waste over each request's lifetime, the requests taken one at a time.
struct LifetimeWaste {
  std::string scheme;
  int64_t requests = 0;           ///< requests the scheme admitted
  int64_t rejected_requests = 0;  ///< longer than max_length (contiguous schemes)
  /// Summed over requests and their decode steps: slots x steps, the time-weighted memory.
  int64_t allocated_slot_steps = 0, used_slot_steps = 0;
  /// Summed over requests, each at its last step (the largest it gets).
  int64_t allocated_slots_at_end = 0, used_slots_at_end = 0;
  int64_t max_wasted_slots_at_end = 0;  ///< the worst single request at its last step

  /// Fraction of allocated slot-steps that held no token.
  double waste_fraction() const;
  double waste_fraction_at_end() const;
};

/// Replays every request alone, start to finish: allocate, one append per generated token,
/// sampling after each step.
LifetimeWaste measure_lifetime_waste(const std::vector<TraceRequest>& requests,
                                     const KvScheme& scheme);

struct ConcurrentOptions {
  double seconds_per_token = 0.020;  ///< every live request generates one token per this time
  double tick_seconds = 0.100;       ///< memory is sampled on this grid, from time 0
};

/// Memory of one scheme over time when requests arrive at their trace times.
struct ConcurrentWaste {
  std::string scheme;
  int64_t requests = 0, rejected_requests = 0;
  std::vector<SlotSample> samples;     ///< one per tick: ticks 0, 1, ... until all finished
  std::vector<int64_t> live_requests;  ///< per tick
  double mean_allocated_slots = 0, mean_used_slots = 0, mean_live_requests = 0;
  int64_t peak_allocated_slots = 0, peak_used_slots = 0, peak_live_requests = 0;
  /// Mean over ticks of (allocated - used) / allocated, weighted by allocated.
  double waste_fraction() const;
  /// Allocated slots per live request, averaged over time: what admitting one more costs.
  double allocated_slots_per_live_request() const;
};

/// Replays the trace in time: a request starts at its arrival (prompt allocated, first token
/// appended: prefill takes no time), appends a token every seconds_per_token after that and is
/// freed seconds_per_token after its last one, so G tokens keep it alive G steps. A scheme that
/// does not admit a request (contiguous, too long) skips it.
/// Memory is sampled after everything due at or before each tick has happened. `progress` (may
/// be empty) is called with the simulated time about once per simulated minute.
std::vector<ConcurrentWaste> simulate_concurrent(const std::vector<TraceRequest>& requests,
                                                 const std::vector<KvScheme>& schemes,
                                                 const ConcurrentOptions& options,
                                                 const std::function<void(double)>& progress = {});

}  // namespace servelab
