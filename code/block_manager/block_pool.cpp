#include "block_manager/block_pool.h"

#include <utility>

#include "common/error.h"

namespace servelab {

BlockPool::BlockPool(std::string name, int64_t num_blocks, bool enable_prefix_caching)
    : name_(std::move(name)), enable_prefix_caching_(enable_prefix_caching) {
  if (num_blocks < 0)
    fail(name_, " block pool: the number of blocks must be >= 0, got ", num_blocks);
  if (num_blocks > INT32_MAX) fail(name_, " block pool: ", num_blocks, " blocks is too many");
  blocks_.resize(static_cast<size_t>(num_blocks));
  // A stack that hands out block 0 first: easier to read in tests and debugging output.
  free_list_.reserve(blocks_.size());
  for (int64_t block = num_blocks - 1; block >= 0; --block)
    free_list_.push_back(static_cast<int32_t>(block));
}

const BlockPool::BlockInfo& BlockPool::info(int32_t block) const {
  if (block < 0 || block >= num_blocks())
    fail(name_, " block pool: block ", block, " is out of range [0, ", num_blocks(), ")");
  return blocks_[static_cast<size_t>(block)];
}

BlockPool::BlockInfo& BlockPool::info(int32_t block) {
  return const_cast<BlockInfo&>(static_cast<const BlockPool&>(*this).info(block));
}

int32_t BlockPool::allocate() {
  int32_t block;
  if (!free_list_.empty()) {
    block = free_list_.back();
    free_list_.pop_back();
  } else if (!evictable_.empty()) {
    // Every free block holds a cached prefix: give up the one unused for the longest.
    block = evictable_.front();
    evictable_.pop_front();
    info(block).evictable = false;
    forget_prefix(block);
  } else {
    fail(name_, " block pool is full: all ", num_blocks(), " blocks are in use");
  }
  info(block).ref_count = 1;
  return block;
}

void BlockPool::add_reference(int32_t block) {
  BlockInfo& entry = info(block);
  if (entry.ref_count == 0) {
    // Only a cached free block may be picked up again (a prefix hit); a block on the plain free
    // list has no contents anyone can ask for.
    if (!entry.evictable)
      fail(name_, " block pool: block ", block, " is free; it cannot gain a reference");
    evictable_.erase(entry.lru_position);
    entry.evictable = false;
  }
  ++entry.ref_count;
}

void BlockPool::release(int32_t block) {
  BlockInfo& entry = info(block);
  if (entry.ref_count <= 0)
    fail(name_, " block pool: block ", block, " is already free (double free)");
  if (--entry.ref_count > 0) return;
  if (entry.registered && entry.computed) {
    entry.evictable = true;
    entry.lru_position = evictable_.insert(evictable_.end(), block);
  } else {
    forget_prefix(block);
    free_list_.push_back(block);
  }
}

int32_t BlockPool::ref_count(int32_t block) const {
  return info(block).ref_count;
}

std::optional<int32_t> BlockPool::lookup(uint64_t hash) const {
  if (!enable_prefix_caching_) return std::nullopt;
  auto found = cached_.find(hash);
  if (found == cached_.end() || !blocks_[static_cast<size_t>(found->second)].computed)
    return std::nullopt;
  return found->second;
}

void BlockPool::set_hash(int32_t block, uint64_t hash) {
  if (!enable_prefix_caching_) return;
  BlockInfo& entry = info(block);
  if (entry.ref_count <= 0)
    fail(name_, " block pool: block ", block, " is free; only a used block can hold a prefix");
  if (entry.has_hash) {
    if (entry.hash != hash) fail(name_, " block pool: block ", block, " already holds a prefix");
    return;
  }
  entry.has_hash = true;
  entry.hash = hash;
  // The first block to hold a prefix is the one lookups find; a later one with the same tokens
  // (computed in parallel before the first was finished) stays private and is freed normally.
  if (cached_.emplace(hash, block).second) entry.registered = true;
}

void BlockPool::mark_computed(int32_t block) {
  info(block).computed = true;
}

void BlockPool::copy_prefix_state(int32_t block, const BlockPool& other, int32_t other_block) {
  const BlockInfo& source = other.info(other_block);
  if (source.has_hash) set_hash(block, source.hash);
  if (source.computed) mark_computed(block);
}

void BlockPool::forget_prefix(int32_t block) {
  BlockInfo& entry = info(block);
  if (entry.registered) cached_.erase(entry.hash);
  entry.has_hash = false;
  entry.hash = 0;
  entry.registered = false;
  entry.computed = false;
}

}  // namespace servelab
