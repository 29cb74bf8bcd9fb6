// The block manager: the bookkeeping of the paged KV cache. It gives every sequence a block table
// (logical block i -> physical block), hands out and takes back blocks of the GPU and CPU pools,
// shares blocks between sequences (forks, prefix caching) with copy-on-write, and plans swaps.
// It never touches device memory: what must move comes back as a plan (cache_plan.h) that the
// cache engine executes before the next step.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "block_manager/block_pool.h"
#include "block_manager/cache_plan.h"

namespace servelab {

/// The caller's names for sequences and requests. A request (a prompt with its samples or beams)
/// owns one or more sequences; swap and preemption act on whole requests.
using SequenceId = int64_t;
using RequestId = int64_t;

struct BlockManagerConfig {
  int64_t block_size = 16;     ///< tokens per block
  int64_t num_gpu_blocks = 0;  ///< the pool attention reads from
  int64_t num_cpu_blocks = 0;  ///< the swap space, in pinned host memory
  /// Fraction of the GPU pool that admission keeps free, so that running sequences can still
  /// grow after new requests are let in (fewer preemptions right after admission).
  double watermark = 0.01;
  bool enable_prefix_caching = false;
};

/// The answer of can_allocate.
enum class AllocationStatus {
  kOk,     ///< the prompt fits now
  kLater,  ///< not now: wait until blocks are freed
  kNever,  ///< can never fit, even in an empty pool: reject the request
};
const char* to_string(AllocationStatus status);

/// Where a sequence's next token goes, and the copy to make first if its last block was shared.
struct AppendResult {
  int64_t slot = 0;               ///< physical block * block_size + offset in the GPU pool
  std::optional<BlockCopy> copy;  ///< copy-on-write: copy before the step writes the slot
};

/// Counters a server exposes (all since construction).
struct BlockManagerStats {
  int64_t gpu_blocks_total = 0, gpu_blocks_free = 0, gpu_blocks_used = 0;
  int64_t gpu_blocks_cached = 0;  ///< free blocks still holding a reusable prefix
  int64_t cpu_blocks_total = 0, cpu_blocks_free = 0, cpu_blocks_used = 0;
  double gpu_usage = 0;  ///< used / total
  double cpu_usage = 0;
  int64_t swap_outs = 0, swap_ins = 0;  ///< requests moved
  int64_t blocks_swapped_out = 0, blocks_swapped_in = 0;
  int64_t recompute_preemptions = 0;  ///< requests whose blocks were dropped
  int64_t copy_on_writes = 0;
  int64_t prefix_queries = 0;  ///< full prompt blocks that could have been found in the cache
  int64_t prefix_hits = 0;     ///< ... of which were found (tokens not recomputed)
  double prefix_hit_rate() const {
    return prefix_queries == 0 ? 0.0 : static_cast<double>(prefix_hits) / prefix_queries;
  }
};

class BlockManager {
 public:
  explicit BlockManager(const BlockManagerConfig& config);

  const BlockManagerConfig& config() const { return config_; }
  int64_t block_size() const { return config_.block_size; }
  /// GPU blocks admission leaves free (the watermark as a block count).
  int64_t watermark_blocks() const { return watermark_blocks_; }
  /// Blocks needed for `num_tokens` tokens.
  int64_t blocks_for(int64_t num_tokens) const;

  // ---- admission ----------------------------------------------------------------------------
  /// Can a new request with this prompt be given its blocks now? `max_total_tokens` (prompt plus
  /// new tokens, per sequence) and `num_sequences` let NEVER also catch requests that could start
  /// but could never finish alone in an empty pool; 0 checks the prompt only. Prefix-cache hits
  /// count as already allocated.
  AllocationStatus can_allocate(const std::vector<int32_t>& prompt, int64_t max_total_tokens = 0,
                                int64_t num_sequences = 1) const;
  /// Gives the first sequence of `request` blocks for its prompt (all of them on the GPU).
  /// @return how many leading prompt tokens already have their keys and values in the cache
  ///         (prefix-cache hits; always a whole number of blocks and less than the prompt), so
  ///         the prefill can start after them.
  /// Throws if the sequence exists or the GPU pool lacks blocks (ask can_allocate first).
  int64_t allocate(RequestId request, SequenceId sequence, const std::vector<int32_t>& prompt);

  // ---- growth -------------------------------------------------------------------------------
  /// Can every sequence of `request` get the slot for one more token right now?
  bool can_append_slots(RequestId request) const;
  /// The sequence grows by `token`: returns the GPU slot for its keys and values, taking a new
  /// block when the last one is full, or a private copy of the last block when it is shared
  /// (copy-on-write). Throws if no GPU block is free (ask can_append_slots first) or the
  /// sequence is swapped out.
  AppendResult append_slot(SequenceId sequence, int32_t token);
  /// The keys and values of every token of `sequence` so far have been written (a step ran over
  /// it): its full blocks may now be shared through the prefix cache.
  void mark_computed(SequenceId sequence);
  /// `child` starts as a copy of `parent` in the same request, sharing all its blocks
  /// (parallel sampling, beam search). Whoever writes a shared block first gets a copy.
  void fork(SequenceId parent, SequenceId child);

  // ---- release ------------------------------------------------------------------------------
  /// Drops one sequence (a finished sample, a pruned beam); its request lives on while it has
  /// sequences. Throws if the sequence is unknown (never allocated or already freed).
  void free_sequence(SequenceId sequence);
  /// Drops every sequence of the request (finished or aborted), wherever its blocks are.
  void free_request(RequestId request);

  // ---- preemption ---------------------------------------------------------------------------
  /// Can the whole request move to the CPU pool now?
  bool can_swap_out(RequestId request) const;
  /// Moves every block of the request's sequences to the CPU pool, keeping shared blocks shared.
  /// With prefix caching, a block whose computed prefix the CPU pool already holds (another
  /// swapped request with the same prompt) is shared there instead of moved.
  /// In one step, make every swap_out before any swap_in (see CachePlan).
  /// @return the GPU -> CPU block moves, at most one per distinct block.
  std::vector<BlockMove> swap_out(RequestId request);
  /// Can the swapped request come back now, leaving each of its sequences room for one token
  /// and the watermark free?
  bool can_swap_in(RequestId request) const;
  /// Moves the request back to the GPU pool. With prefix caching, blocks whose prefix is still
  /// cached on the GPU are reused instead of moved. Its CPU blocks are free at once, so a
  /// swap_out made after it in the same step could be handed one that this step's swap-in has
  /// yet to read: make the step's swap-outs first.
  /// @return the CPU -> GPU block moves.
  std::vector<BlockMove> swap_in(RequestId request);
  /// Preemption by recompute: frees every block of the request. The caller runs it again later
  /// from its prompt plus the tokens generated so far.
  void preempt_by_recompute(RequestId request);

  // ---- queries ------------------------------------------------------------------------------
  bool has_sequence(SequenceId sequence) const { return sequences_.count(sequence) != 0; }
  bool has_request(RequestId request) const { return requests_.count(request) != 0; }
  /// Physical block ids, logical order; in the CPU pool while the request is swapped out.
  const std::vector<int32_t>& block_table(SequenceId sequence) const;
  /// Tokens with a slot (prompt plus appended).
  int64_t num_tokens(SequenceId sequence) const;
  RequestId request_of(SequenceId sequence) const;
  std::vector<SequenceId> sequences_of(RequestId request) const;
  bool is_swapped(RequestId request) const;
  const BlockPool& gpu_pool() const { return gpu_; }
  const BlockPool& cpu_pool() const { return cpu_; }
  BlockManagerStats stats() const;
  /// Recounts every reference from the block tables and checks the pools agree (each block's
  /// reference count equals the tables holding it, free + used = total). Throws servelab::Error
  /// naming the first disagreement. For tests and debugging: O(blocks + table entries).
  void check_invariants() const;

 private:
  struct SequenceState {
    RequestId request = 0;
    std::vector<int32_t> block_table;
    int64_t num_tokens = 0;
    /// Prefix caching: the hash chain up to the last full block, the tokens of the partial last
    /// block, and how many leading blocks are known to be computed.
    uint64_t last_full_hash = 0;
    std::vector<int32_t> partial_tokens;
    int64_t num_computed_blocks = 0;
  };
  struct RequestState {
    std::set<SequenceId> sequences;
    bool swapped = false;
  };

  SequenceState& sequence_state(SequenceId sequence, const char* operation);
  const SequenceState& sequence_state(SequenceId sequence, const char* operation) const;
  RequestState& request_state(RequestId request, const char* operation);
  const RequestState& request_state(RequestId request, const char* operation) const;
  BlockPool& pool_of(const RequestState& request) { return request.swapped ? cpu_ : gpu_; }
  /// Records that `token` filled a slot of the sequence; hashes the last block once it is full.
  void record_token(SequenceState& state, int32_t token);
  /// Distinct blocks of the request's tables, in first-seen order, with how many of the
  /// request's tables hold each.
  std::vector<std::pair<int32_t, int32_t>> distinct_blocks(const RequestState& request) const;
  /// Moves the request's blocks from one pool to the other; returns the moves made.
  std::vector<BlockMove> move_request(RequestState& request, BlockPool& from, BlockPool& to);
  void release_sequence(SequenceId sequence, SequenceState& state);

  BlockManagerConfig config_;
  int64_t watermark_blocks_ = 0;
  BlockPool gpu_;
  BlockPool cpu_;
  std::map<SequenceId, SequenceState> sequences_;
  std::map<RequestId, RequestState> requests_;
  BlockManagerStats counters_;  ///< the cumulative counters; pool sizes are filled by stats()
};

}  // namespace servelab
