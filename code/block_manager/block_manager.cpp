#include "block_manager/block_manager.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "block_manager/block_hash.h"
#include "common/error.h"

namespace servelab {

const char* to_string(AllocationStatus status) {
  switch (status) {
    case AllocationStatus::kOk:
      return "OK";
    case AllocationStatus::kLater:
      return "LATER";
    case AllocationStatus::kNever:
      return "NEVER";
  }
  return "?";
}

namespace {

BlockManagerConfig checked(const BlockManagerConfig& config) {
  if (config.block_size < 1)
    fail("block manager: block_size must be >= 1, got ", config.block_size);
  if (config.num_gpu_blocks < 1)
    fail("block manager: num_gpu_blocks must be >= 1, got ", config.num_gpu_blocks);
  if (config.num_cpu_blocks < 0)
    fail("block manager: num_cpu_blocks must be >= 0, got ", config.num_cpu_blocks);
  if (!(config.watermark >= 0 && config.watermark < 1))
    fail("block manager: watermark must be in [0, 1), got ", config.watermark);
  return config;
}

}  // namespace

BlockManager::BlockManager(const BlockManagerConfig& config)
    : config_(checked(config)),
      watermark_blocks_(static_cast<int64_t>(config.watermark * config.num_gpu_blocks)),
      gpu_("GPU", config.num_gpu_blocks, config.enable_prefix_caching),
      cpu_("CPU", config.num_cpu_blocks, config.enable_prefix_caching) {}

int64_t BlockManager::blocks_for(int64_t num_tokens) const {
  return (num_tokens + config_.block_size - 1) / config_.block_size;
}

// ---- lookups ------------------------------------------------------------------------------------

BlockManager::SequenceState& BlockManager::sequence_state(SequenceId sequence,
                                                          const char* operation) {
  return const_cast<SequenceState&>(
      static_cast<const BlockManager&>(*this).sequence_state(sequence, operation));
}

const BlockManager::SequenceState& BlockManager::sequence_state(SequenceId sequence,
                                                                const char* operation) const {
  auto found = sequences_.find(sequence);
  if (found == sequences_.end())
    fail(operation, ": sequence ", sequence,
         " is not known to the block manager (never allocated, or already freed)");
  return found->second;
}

BlockManager::RequestState& BlockManager::request_state(RequestId request, const char* operation) {
  return const_cast<RequestState&>(
      static_cast<const BlockManager&>(*this).request_state(request, operation));
}

const BlockManager::RequestState& BlockManager::request_state(RequestId request,
                                                              const char* operation) const {
  auto found = requests_.find(request);
  if (found == requests_.end())
    fail(operation, ": request ", request,
         " is not known to the block manager (never allocated, or already freed)");
  return found->second;
}

// ---- admission ----------------------------------------------------------------------------------

namespace {

/// The prompt's full blocks that the prefix cache already holds, in order, stopping at the first
/// miss. At most (prompt - 1) / block_size blocks: the last prompt token is always computed,
/// since its logits choose the first new token.
std::vector<int32_t> cached_prefix(const BlockPool& gpu, const std::vector<int32_t>& prompt,
                                   int64_t block_size) {
  std::vector<int32_t> hits;
  if (!gpu.prefix_caching()) return hits;
  const int64_t eligible = (static_cast<int64_t>(prompt.size()) - 1) / block_size;
  uint64_t hash = kNoPrefixHash;
  for (int64_t i = 0; i < eligible; ++i) {
    hash = chain_block_hash(hash, prompt.data() + i * block_size, block_size);
    std::optional<int32_t> block = gpu.lookup(hash);
    if (!block) break;
    hits.push_back(*block);
  }
  return hits;
}

}  // namespace

AllocationStatus BlockManager::can_allocate(const std::vector<int32_t>& prompt,
                                            int64_t max_total_tokens, int64_t num_sequences) const {
  if (prompt.empty()) fail("can_allocate: the prompt is empty");
  if (num_sequences < 1) fail("can_allocate: num_sequences must be >= 1, got ", num_sequences);
  // BEGIN LAB(lab05-can-allocate)
  const int64_t prompt_tokens = static_cast<int64_t>(prompt.size());
  const int64_t prompt_blocks = blocks_for(prompt_tokens);
  const int64_t usable = gpu_.num_blocks() - watermark_blocks_;

  // NEVER: the request could not run even alone in an empty pool. Its sequences share the
  // prompt's full blocks; from there on each needs blocks of its own up to its last token.
  int64_t worst_case = prompt_blocks;
  if (max_total_tokens > prompt_tokens) {
    const int64_t shared = prompt_tokens / config_.block_size;
    worst_case = shared + num_sequences * (blocks_for(max_total_tokens) - shared);
  }
  if (worst_case > usable) return AllocationStatus::kNever;

  // Prefix-cache hits need no new block, but a hit on a free (cached, unreferenced) block takes
  // that block out of the free count all the same.
  int64_t new_blocks = prompt_blocks;
  int64_t free_blocks = gpu_.num_free();
  for (int32_t block : cached_prefix(gpu_, prompt, config_.block_size)) {
    --new_blocks;
    if (gpu_.ref_count(block) == 0) --free_blocks;
  }
  // The watermark keeps a few blocks back for the sequences already running.
  if (free_blocks - new_blocks >= watermark_blocks_) return AllocationStatus::kOk;
  return AllocationStatus::kLater;
  // END LAB
}

int64_t BlockManager::allocate(RequestId request, SequenceId sequence,
                               const std::vector<int32_t>& prompt) {
  if (prompt.empty()) fail("allocate: sequence ", sequence, " has an empty prompt");
  if (sequences_.count(sequence)) fail("allocate: sequence ", sequence, " already has blocks");
  auto existing = requests_.find(request);
  if (existing != requests_.end() && existing->second.swapped)
    fail("allocate: request ", request, " is swapped out; swap it in first");

  const int64_t block_size = config_.block_size;
  const int64_t prompt_tokens = static_cast<int64_t>(prompt.size());
  const int64_t prompt_blocks = blocks_for(prompt_tokens);
  std::vector<int32_t> hits = cached_prefix(gpu_, prompt, block_size);
  int64_t needed = prompt_blocks;
  for (int32_t block : hits) {
    needed -= 1;
    if (gpu_.ref_count(block) == 0) needed += 1;  // taking a cached free block uses it up
  }
  if (needed > gpu_.num_free()) {
    fail("allocate: sequence ", sequence, " needs ", needed, " free GPU blocks for its ",
         prompt_tokens, "-token prompt, but only ", gpu_.num_free(),
         " are free (ask can_allocate first)");
  }

  SequenceState state;
  state.request = request;
  state.num_tokens = prompt_tokens;
  state.num_computed_blocks = static_cast<int64_t>(hits.size());
  state.last_full_hash = kNoPrefixHash;
  for (int32_t block : hits) gpu_.add_reference(block);
  state.block_table = hits;
  for (int64_t i = static_cast<int64_t>(hits.size()); i < prompt_blocks; ++i)
    state.block_table.push_back(gpu_.allocate());

  if (gpu_.prefix_caching()) {
    const int64_t eligible = (prompt_tokens - 1) / block_size;
    counters_.prefix_queries += eligible;
    counters_.prefix_hits += static_cast<int64_t>(hits.size());
    // Full blocks get their prefix key now; lookups find them once a step has computed them.
    const int64_t full_blocks = prompt_tokens / block_size;
    for (int64_t i = 0; i < full_blocks; ++i) {
      state.last_full_hash =
          chain_block_hash(state.last_full_hash, prompt.data() + i * block_size, block_size);
      gpu_.set_hash(state.block_table[static_cast<size_t>(i)], state.last_full_hash);
    }
    state.partial_tokens.assign(prompt.begin() + full_blocks * block_size, prompt.end());
  }

  sequences_.emplace(sequence, std::move(state));
  requests_[request].sequences.insert(sequence);
  return static_cast<int64_t>(hits.size()) * block_size;
}

// ---- growth -------------------------------------------------------------------------------------

bool BlockManager::can_append_slots(RequestId request) const {
  const RequestState& state = request_state(request, "can_append_slots");
  if (state.swapped) return false;
  int64_t needed = 0;
  for (SequenceId sequence : state.sequences) {
    const SequenceState& seq = sequences_.at(sequence);
    const bool last_full = seq.num_tokens % config_.block_size == 0;
    // A new block when the last is full; a private copy when the last is shared.
    if (last_full || gpu_.ref_count(seq.block_table.back()) > 1) ++needed;
  }
  return needed <= gpu_.num_free();
}

AppendResult BlockManager::append_slot(SequenceId sequence, int32_t token) {
  SequenceState& state = sequence_state(sequence, "append_slot");
  if (requests_.at(state.request).swapped)
    fail("append_slot: sequence ", sequence, " is swapped out; swap its request in first");
  AppendResult result;
  // BEGIN LAB(lab05-append-slot)
  const int64_t block_size = config_.block_size;
  const int64_t position = state.num_tokens;
  const size_t block_index = static_cast<size_t>(position / block_size);
  if (block_index == state.block_table.size()) {
    // The last block is full (or there is none): the token starts a new one.
    state.block_table.push_back(gpu_.allocate());
  } else {
    // The token goes into the last block. If another sequence shares it (a fork), writing would
    // change that sequence's cache too: write into a private copy instead.
    const int32_t last = state.block_table.back();
    if (gpu_.ref_count(last) > 1) {
      const int32_t copy = gpu_.allocate();
      gpu_.release(last);
      state.block_table.back() = copy;
      result.copy = BlockCopy{last, copy};
      ++counters_.copy_on_writes;
    }
  }
  result.slot = state.block_table[block_index] * block_size + position % block_size;
  state.num_tokens += 1;
  // END LAB
  record_token(state, token);
  return result;
}

void BlockManager::record_token(SequenceState& state, int32_t token) {
  if (!gpu_.prefix_caching()) return;
  state.partial_tokens.push_back(token);
  if (static_cast<int64_t>(state.partial_tokens.size()) < config_.block_size) return;
  state.last_full_hash = chain_block_hash(state.last_full_hash, state.partial_tokens);
  const size_t full_block = static_cast<size_t>(state.num_tokens / config_.block_size - 1);
  gpu_.set_hash(state.block_table[full_block], state.last_full_hash);
  state.partial_tokens.clear();
}

void BlockManager::mark_computed(SequenceId sequence) {
  SequenceState& state = sequence_state(sequence, "mark_computed");
  if (requests_.at(state.request).swapped)
    fail("mark_computed: sequence ", sequence, " is swapped out; no step can have run over it");
  const int64_t full_blocks = state.num_tokens / config_.block_size;
  for (int64_t i = state.num_computed_blocks; i < full_blocks; ++i)
    gpu_.mark_computed(state.block_table[static_cast<size_t>(i)]);
  state.num_computed_blocks = std::max(state.num_computed_blocks, full_blocks);
}

void BlockManager::fork(SequenceId parent, SequenceId child) {
  const SequenceState& parent_state = sequence_state(parent, "fork");
  if (sequences_.count(child)) fail("fork: sequence ", child, " already exists");
  RequestState& request = requests_.at(parent_state.request);
  if (request.swapped)
    fail("fork: sequence ", parent, " is swapped out; swap its request in first");
  for (int32_t block : parent_state.block_table) gpu_.add_reference(block);
  SequenceState copy = parent_state;
  sequences_.emplace(child, std::move(copy));
  request.sequences.insert(child);
}

// ---- release ------------------------------------------------------------------------------------

void BlockManager::release_sequence(SequenceId sequence, SequenceState& state) {
  RequestState& request = requests_.at(state.request);
  BlockPool& pool = pool_of(request);
  // Last block first: with prefix caching the least recently used cached blocks are evicted
  // first, and a prompt's later blocks are worth less than its beginning (fewer prompts share
  // them).
  for (auto block = state.block_table.rbegin(); block != state.block_table.rend(); ++block)
    pool.release(*block);
  const RequestId request_id = state.request;
  request.sequences.erase(sequence);
  sequences_.erase(sequence);
  if (request.sequences.empty()) requests_.erase(request_id);
}

void BlockManager::free_sequence(SequenceId sequence) {
  SequenceState& state = sequence_state(sequence, "free_sequence");
  release_sequence(sequence, state);
}

void BlockManager::free_request(RequestId request) {
  // Copy the ids: releasing the last sequence erases the request.
  const std::set<SequenceId> sequences = request_state(request, "free_request").sequences;
  for (SequenceId sequence : sequences) release_sequence(sequence, sequences_.at(sequence));
}

void BlockManager::preempt_by_recompute(RequestId request) {
  request_state(request, "preempt_by_recompute");
  free_request(request);
  ++counters_.recompute_preemptions;
}

// ---- swap ---------------------------------------------------------------------------------------

std::vector<std::pair<int32_t, int32_t>> BlockManager::distinct_blocks(
    const RequestState& request) const {
  std::vector<std::pair<int32_t, int32_t>> blocks;
  std::unordered_map<int32_t, size_t> index;
  for (SequenceId sequence : request.sequences) {
    for (int32_t block : sequences_.at(sequence).block_table) {
      auto inserted = index.emplace(block, blocks.size());
      if (inserted.second)
        blocks.emplace_back(block, 1);
      else
        ++blocks[inserted.first->second].second;
    }
  }
  return blocks;
}

bool BlockManager::can_swap_out(RequestId request) const {
  const RequestState& state = request_state(request, "can_swap_out");
  if (state.swapped) return false;
  return static_cast<int64_t>(distinct_blocks(state).size()) <= cpu_.num_free();
}

std::vector<BlockMove> BlockManager::swap_out(RequestId request) {
  RequestState& state = request_state(request, "swap_out");
  if (state.swapped) fail("swap_out: request ", request, " is already swapped out");
  const int64_t needed = static_cast<int64_t>(distinct_blocks(state).size());
  if (needed > cpu_.num_free()) {
    fail("swap_out: request ", request, " needs ", needed, " free CPU blocks, but only ",
         cpu_.num_free(), " of ", cpu_.num_blocks(), " are free (ask can_swap_out first)");
  }
  std::vector<BlockMove> moves = move_request(state, gpu_, cpu_);
  state.swapped = true;
  ++counters_.swap_outs;
  counters_.blocks_swapped_out += static_cast<int64_t>(moves.size());
  return moves;
}

bool BlockManager::can_swap_in(RequestId request) const {
  const RequestState& state = request_state(request, "can_swap_in");
  if (!state.swapped) return false;
  // Its blocks, plus room for every sequence's next token, above the watermark.
  const int64_t needed = static_cast<int64_t>(distinct_blocks(state).size()) +
                         static_cast<int64_t>(state.sequences.size());
  return gpu_.num_free() - needed >= watermark_blocks_;
}

std::vector<BlockMove> BlockManager::swap_in(RequestId request) {
  RequestState& state = request_state(request, "swap_in");
  if (!state.swapped) fail("swap_in: request ", request, " is not swapped out");
  // Blocks whose prefix is still cached and in use on the GPU cost nothing; every other block
  // takes one free GPU block (a hit on a cached free block takes that one).
  int64_t needed = 0;
  for (const auto& [block, count] : distinct_blocks(state)) {
    (void)count;
    std::optional<int32_t> hit;
    if (cpu_.has_hash(block) && cpu_.computed(block)) hit = gpu_.lookup(cpu_.hash(block));
    if (!hit || gpu_.ref_count(*hit) == 0) ++needed;
  }
  if (needed > gpu_.num_free()) {
    fail("swap_in: request ", request, " needs ", needed, " free GPU blocks, but only ",
         gpu_.num_free(), " are free (ask can_swap_in first)");
  }
  std::vector<BlockMove> moves = move_request(state, cpu_, gpu_);
  state.swapped = false;
  ++counters_.swap_ins;
  counters_.blocks_swapped_in += static_cast<int64_t>(moves.size());
  return moves;
}

std::vector<BlockMove> BlockManager::move_request(RequestState& request, BlockPool& from,
                                                  BlockPool& to) {
  std::vector<BlockMove> moves;
  // BEGIN LAB(lab05-swap)
  std::unordered_map<int32_t, int32_t> new_block;  // block in `from` -> block in `to`
  const std::vector<std::pair<int32_t, int32_t>> blocks = distinct_blocks(request);
  // First the blocks the destination already holds (a computed prefix still cached on the GPU):
  // they are shared, not moved. Taking them before allocating anything keeps allocate() from
  // evicting one of them.
  for (const auto& [block, count] : blocks) {
    if (!from.has_hash(block) || !from.computed(block)) continue;
    std::optional<int32_t> hit = to.lookup(from.hash(block));
    if (!hit) continue;
    for (int32_t i = 0; i < count; ++i) to.add_reference(*hit);
    new_block[block] = *hit;
  }
  // Then one new block per distinct block, referenced by as many tables as before: sharing
  // inside the request (forks) survives the move.
  for (const auto& [block, count] : blocks) {
    if (new_block.count(block)) continue;
    const int32_t destination = to.allocate();
    for (int32_t i = 1; i < count; ++i) to.add_reference(destination);
    to.copy_prefix_state(destination, from, block);
    new_block[block] = destination;
    moves.push_back(BlockMove{block, destination});
  }
  for (const auto& [block, count] : blocks)
    for (int32_t i = 0; i < count; ++i) from.release(block);
  for (SequenceId sequence : request.sequences)
    for (int32_t& block : sequences_.at(sequence).block_table) block = new_block.at(block);
  // END LAB
  return moves;
}

// ---- queries ------------------------------------------------------------------------------------

const std::vector<int32_t>& BlockManager::block_table(SequenceId sequence) const {
  return sequence_state(sequence, "block_table").block_table;
}

int64_t BlockManager::num_tokens(SequenceId sequence) const {
  return sequence_state(sequence, "num_tokens").num_tokens;
}

RequestId BlockManager::request_of(SequenceId sequence) const {
  return sequence_state(sequence, "request_of").request;
}

std::vector<SequenceId> BlockManager::sequences_of(RequestId request) const {
  const RequestState& state = request_state(request, "sequences_of");
  return std::vector<SequenceId>(state.sequences.begin(), state.sequences.end());
}

bool BlockManager::is_swapped(RequestId request) const {
  return request_state(request, "is_swapped").swapped;
}

BlockManagerStats BlockManager::stats() const {
  BlockManagerStats stats = counters_;
  stats.gpu_blocks_total = gpu_.num_blocks();
  stats.gpu_blocks_free = gpu_.num_free();
  stats.gpu_blocks_used = gpu_.num_used();
  stats.gpu_blocks_cached = gpu_.num_cached_free();
  stats.cpu_blocks_total = cpu_.num_blocks();
  stats.cpu_blocks_free = cpu_.num_free();
  stats.cpu_blocks_used = cpu_.num_used();
  stats.gpu_usage =
      static_cast<double>(stats.gpu_blocks_used) / std::max<int64_t>(1, stats.gpu_blocks_total);
  stats.cpu_usage =
      static_cast<double>(stats.cpu_blocks_used) / std::max<int64_t>(1, stats.cpu_blocks_total);
  return stats;
}

void BlockManager::check_invariants() const {
  std::vector<int32_t> gpu_refs(static_cast<size_t>(gpu_.num_blocks()), 0);
  std::vector<int32_t> cpu_refs(static_cast<size_t>(cpu_.num_blocks()), 0);
  for (const auto& [sequence, state] : sequences_) {
    auto request = requests_.find(state.request);
    if (request == requests_.end() || !request->second.sequences.count(sequence))
      fail("invariant: sequence ", sequence, " is not listed by its request ", state.request);
    if (static_cast<int64_t>(state.block_table.size()) != blocks_for(state.num_tokens)) {
      fail("invariant: sequence ", sequence, " has ", state.block_table.size(), " blocks for ",
           state.num_tokens, " tokens");
    }
    std::vector<int32_t>& refs = request->second.swapped ? cpu_refs : gpu_refs;
    for (int32_t block : state.block_table) {
      if (block < 0 || block >= static_cast<int32_t>(refs.size()))
        fail("invariant: sequence ", sequence, " holds block ", block, ", out of range");
      ++refs[static_cast<size_t>(block)];
    }
  }
  for (const auto& [request, state] : requests_) {
    if (state.sequences.empty()) fail("invariant: request ", request, " has no sequences");
    for (SequenceId sequence : state.sequences)
      if (!sequences_.count(sequence))
        fail("invariant: request ", request, " lists unknown sequence ", sequence);
  }
  auto check_pool = [](const BlockPool& pool, const std::vector<int32_t>& refs) {
    int64_t used = 0;
    for (size_t block = 0; block < refs.size(); ++block) {
      const int32_t actual = pool.ref_count(static_cast<int32_t>(block));
      if (actual != refs[block]) {
        fail("invariant: ", pool.name(), " block ", block, " has reference count ", actual, " but ",
             refs[block], " block tables hold it");
      }
      if (actual > 0) ++used;
    }
    if (used + pool.num_free() != pool.num_blocks()) {
      fail("invariant: ", pool.name(), " pool has ", used, " used and ", pool.num_free(),
           " free blocks, but ", pool.num_blocks(), " in all");
    }
  };
  check_pool(gpu_, gpu_refs);
  check_pool(cpu_, cpu_refs);
}

}  // namespace servelab
