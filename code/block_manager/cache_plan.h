// The plans the block manager hands to the cache engine: which blocks to copy inside the GPU pool
// (copy-on-write) and which to move between the GPU and CPU pools (swap). Plain data: making a
// plan is bookkeeping, executing it is the cache engine's job, so the block manager never touches
// device memory.
#pragma once

#include <cstdint>
#include <vector>

namespace servelab {

/// Copy the contents of GPU block `source` into GPU block `destination` (all layers, keys and
/// values): the first write to a block that several sequences share.
struct BlockCopy {
  int32_t source = 0;
  int32_t destination = 0;
  bool operator==(const BlockCopy& other) const {
    return source == other.source && destination == other.destination;
  }
};

/// Move block `source` of one pool to block `destination` of the other (all layers, keys and
/// values): GPU to CPU for a swap-out, CPU to GPU for a swap-in.
struct BlockMove {
  int32_t source = 0;
  int32_t destination = 0;
  bool operator==(const BlockMove& other) const {
    return source == other.source && destination == other.destination;
  }
};

/// Everything the cache engine must do before one step's forward, in this order: swap out, swap
/// in, then copy. Swap-outs go first because the GPU blocks they free may be handed to other
/// sequences (or to a swap-in) in the same step; copies go last because a copy's source may have
/// just been swapped in. The block manager's calls that build a plan must come in the same order:
/// every swap_out of the step before any swap_in, since a swap_in frees its CPU blocks at once
/// and a later swap_out could otherwise be handed one whose contents the plan has yet to read.
struct CachePlan {
  std::vector<BlockMove> swap_out;  ///< GPU block -> CPU block
  std::vector<BlockMove> swap_in;   ///< CPU block -> GPU block
  std::vector<BlockCopy> copies;    ///< GPU block -> GPU block

  bool empty() const { return swap_out.empty() && swap_in.empty() && copies.empty(); }
  /// Appends another plan's moves and copies after this one's.
  void append(const CachePlan& other);
};

}  // namespace servelab
