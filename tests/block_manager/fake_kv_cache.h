// A stand-in for the cache engine in the block manager's tests: the GPU and CPU pools as arrays of
// int32 "keys and values" (one token id per slot), with plans executed exactly as the cache engine
// executes them. Reading a block table back through it shows whether the bookkeeping kept every
// sequence's tokens where attention would look for them. Test-only: it knows nothing of tensors.
#pragma once

#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "block_manager/cache_plan.h"

namespace servelab::testing {

enum class FakePool { kGpu, kCpu };

inline const char* to_string(FakePool pool) {
  return pool == FakePool::kGpu ? "GPU" : "CPU";
}

class FakeKvCache {
 public:
  /// What a slot holds before anything was written to it, or after its block was given up: never
  /// a token id, so reading it where a token was expected fails loudly.
  static constexpr int32_t kPoison = -1;

  FakeKvCache(int64_t num_gpu_blocks, int64_t num_cpu_blocks, int64_t block_size)
      : block_size_(block_size),
        gpu_(static_cast<size_t>(num_gpu_blocks * block_size), kPoison),
        cpu_(static_cast<size_t>(num_cpu_blocks * block_size), kPoison) {}

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks(FakePool pool) const {
    return static_cast<int64_t>(storage(pool).size()) / block_size_;
  }

  /// Executes `plan` in the cache engine's order: every swap-out, then every swap-in, then every
  /// copy. A batched copy kernel runs a plan's copies all at once, so a plan whose copies chain
  /// (one's destination is another's source) or collide (two share a destination) would race on
  /// the device: that is rejected here as a planning error, as are two moves into one block.
  void apply(const CachePlan& plan) {
    check_distinct_destinations(plan.swap_out, "swap-out");
    check_distinct_destinations(plan.swap_in, "swap-in");
    std::set<int32_t> copy_sources, copy_destinations;
    for (const BlockCopy& copy : plan.copies) copy_sources.insert(copy.source);
    for (const BlockCopy& copy : plan.copies) {
      if (!copy_destinations.insert(copy.destination).second) {
        throw std::logic_error("fake KV cache: two copies of one plan write GPU block " +
                               std::to_string(copy.destination));
      }
      if (copy_sources.count(copy.destination) != 0) {
        throw std::logic_error("fake KV cache: GPU block " + std::to_string(copy.destination) +
                               " is both a copy's source and another copy's destination in one "
                               "plan (a batched copy would race)");
      }
    }
    for (const BlockMove& move : plan.swap_out) {
      copy_block(FakePool::kGpu, move.source, FakePool::kCpu, move.destination);
    }
    for (const BlockMove& move : plan.swap_in) {
      copy_block(FakePool::kCpu, move.source, FakePool::kGpu, move.destination);
    }
    for (const BlockCopy& copy : plan.copies) {
      copy_block(FakePool::kGpu, copy.source, FakePool::kGpu, copy.destination);
    }
  }

  /// The forward pass writing one token's keys and values into GPU slot
  /// `slot` = physical block * block_size + offset.
  void write_gpu_slot(int64_t slot, int32_t token) {
    if (slot < 0 || slot >= static_cast<int64_t>(gpu_.size())) {
      throw std::logic_error("fake KV cache: GPU slot " + std::to_string(slot) +
                             " is outside the pool of " + std::to_string(gpu_.size()) + " slots");
    }
    gpu_[static_cast<size_t>(slot)] = token;
  }

  /// Writes token `position` of a sequence through its GPU block table (the prefill).
  void write_token(const std::vector<int32_t>& block_table, int64_t position, int32_t token) {
    write_gpu_slot(slot_of(block_table, position, FakePool::kGpu), token);
  }

  /// What attention would read for the first `num_tokens` tokens of a sequence whose block table
  /// (physical block ids, logical order) lives in `pool`.
  std::vector<int32_t> read(FakePool pool, const std::vector<int32_t>& block_table,
                            int64_t num_tokens) const {
    std::vector<int32_t> tokens;
    tokens.reserve(static_cast<size_t>(num_tokens));
    for (int64_t position = 0; position < num_tokens; ++position) {
      tokens.push_back(storage(pool)[static_cast<size_t>(slot_of(block_table, position, pool))]);
    }
    return tokens;
  }

  /// Overwrites a block with kPoison: the block was given up, so nothing may read it again
  /// before it is written.
  void poison_block(FakePool pool, int32_t block) {
    check_block(pool, block, "poison");
    std::vector<int32_t>& data = storage(pool);
    for (int64_t offset = 0; offset < block_size_; ++offset) {
      data[static_cast<size_t>(block * block_size_ + offset)] = kPoison;
    }
  }

 private:
  std::vector<int32_t>& storage(FakePool pool) { return pool == FakePool::kGpu ? gpu_ : cpu_; }
  const std::vector<int32_t>& storage(FakePool pool) const {
    return pool == FakePool::kGpu ? gpu_ : cpu_;
  }

  void check_block(FakePool pool, int32_t block, const char* what) const {
    if (block < 0 || block >= num_blocks(pool)) {
      throw std::logic_error(std::string("fake KV cache: ") + what + " names " + to_string(pool) +
                             " block " + std::to_string(block) + ", outside the pool of " +
                             std::to_string(num_blocks(pool)) + " blocks");
    }
  }

  int64_t slot_of(const std::vector<int32_t>& block_table, int64_t position, FakePool pool) const {
    const int64_t logical_block = position / block_size_;
    if (logical_block >= static_cast<int64_t>(block_table.size())) {
      throw std::logic_error("fake KV cache: token " + std::to_string(position) +
                             " lies past the block table's " + std::to_string(block_table.size()) +
                             " blocks");
    }
    const int32_t block = block_table[static_cast<size_t>(logical_block)];
    check_block(pool, block, "a block table");
    return block * block_size_ + position % block_size_;
  }

  void copy_block(FakePool from, int32_t source, FakePool to, int32_t destination) {
    check_block(from, source, "a plan's source");
    check_block(to, destination, "a plan's destination");
    const std::vector<int32_t>& source_data = storage(from);
    std::vector<int32_t>& destination_data = storage(to);
    for (int64_t offset = 0; offset < block_size_; ++offset) {
      destination_data[static_cast<size_t>(destination * block_size_ + offset)] =
          source_data[static_cast<size_t>(source * block_size_ + offset)];
    }
  }

  static void check_distinct_destinations(const std::vector<BlockMove>& moves, const char* what) {
    std::set<int32_t> sources, destinations;
    for (const BlockMove& move : moves) {
      if (!sources.insert(move.source).second || !destinations.insert(move.destination).second) {
        throw std::logic_error(std::string("fake KV cache: the plan's ") + what +
                               " list moves block " + std::to_string(move.source) + " -> " +
                               std::to_string(move.destination) +
                               " but one of the two already appears in it");
      }
    }
  }

  int64_t block_size_;
  std::vector<int32_t> gpu_;  ///< [num_gpu_blocks * block_size] token ids
  std::vector<int32_t> cpu_;  ///< [num_cpu_blocks * block_size] token ids
};

}  // namespace servelab::testing
