// One pool of physical KV blocks (the GPU's or the CPU's): which blocks are free, how many block
// tables reference each block, and, with prefix caching, which full blocks hold which tokens so
// that a later request with the same prefix can reuse them. Bookkeeping only: a block here is an
// index into the cache engine's tensors, never memory.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace servelab {

class BlockPool {
 public:
  /// `num_blocks` blocks, all free. `name` ("GPU", "CPU") appears in error messages.
  BlockPool(std::string name, int64_t num_blocks, bool enable_prefix_caching);

  const std::string& name() const { return name_; }
  int64_t num_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  /// Blocks that allocate() can hand out: never used, or cached but referenced by no sequence.
  int64_t num_free() const { return static_cast<int64_t>(free_list_.size() + evictable_.size()); }
  /// The part of num_free() that still holds a cached prefix (reusable until evicted).
  int64_t num_cached_free() const { return static_cast<int64_t>(evictable_.size()); }
  /// Blocks referenced by at least one block table.
  int64_t num_used() const { return num_blocks() - num_free(); }

  /// Takes a free block and gives it one reference. Prefers never-cached blocks; when there are
  /// none, evicts the least recently used cached block (forgetting its prefix).
  /// Throws servelab::Error when every block is referenced.
  int32_t allocate();
  /// One more block table references `block` (sharing). A cached free block stops being free.
  void add_reference(int32_t block);
  /// One block table less references `block`. At zero the block becomes free; a computed block
  /// with a registered prefix stays cached (evictable, most recently used) instead of forgotten.
  /// Throws servelab::Error if no table referenced it (a double free).
  void release(int32_t block);
  int32_t ref_count(int32_t block) const;

  // ---- prefix caching (no-ops that find nothing when disabled) --------------------------------
  /// A block holding the prefix `hash` whose keys and values are computed, or nothing.
  std::optional<int32_t> lookup(uint64_t hash) const;
  /// Records that referenced `block` holds the prefix `hash`. It becomes the pool's entry for
  /// that prefix unless another block already is (then it stays a private copy).
  void set_hash(int32_t block, uint64_t hash);
  /// The block's keys and values have been written by a step that completed: it may now be
  /// found by lookup().
  void mark_computed(int32_t block);
  /// Copies the prefix identity of a block of another pool (swap moves a block's contents).
  void copy_prefix_state(int32_t block, const BlockPool& other, int32_t other_block);
  bool has_hash(int32_t block) const { return info(block).has_hash; }
  uint64_t hash(int32_t block) const { return info(block).hash; }
  bool computed(int32_t block) const { return info(block).computed; }
  bool prefix_caching() const { return enable_prefix_caching_; }

 private:
  struct BlockInfo {
    int32_t ref_count = 0;
    bool has_hash = false;    ///< the block is full and `hash` names its prefix
    uint64_t hash = 0;        ///< chain hash of its tokens and of every block before it
    bool registered = false;  ///< this block is cached_[hash]
    bool computed = false;    ///< its keys and values are in the cache
    bool evictable = false;   ///< free, but still cached: `lru_position` is valid
    std::list<int32_t>::iterator lru_position;
  };
  const BlockInfo& info(int32_t block) const;
  BlockInfo& info(int32_t block);
  /// Forgets the block's prefix (it is about to be reused or was never computed).
  void forget_prefix(int32_t block);

  std::string name_;
  bool enable_prefix_caching_;
  std::vector<BlockInfo> blocks_;
  std::vector<int32_t> free_list_;                ///< free, holding nothing cached; used as a stack
  std::list<int32_t> evictable_;                  ///< free but cached, least recently used first
  std::unordered_map<uint64_t, int32_t> cached_;  ///< prefix hash -> the block that holds it
};

}  // namespace servelab
