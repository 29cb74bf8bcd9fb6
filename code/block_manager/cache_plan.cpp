#include "block_manager/cache_plan.h"

namespace servelab {

void CachePlan::append(const CachePlan& other) {
  // Copy the other plan's vectors first: `other` may be this plan itself.
  const std::vector<BlockMove> other_swap_out = other.swap_out;
  const std::vector<BlockMove> other_swap_in = other.swap_in;
  const std::vector<BlockCopy> other_copies = other.copies;
  swap_out.insert(swap_out.end(), other_swap_out.begin(), other_swap_out.end());
  swap_in.insert(swap_in.end(), other_swap_in.begin(), other_swap_in.end());
  copies.insert(copies.end(), other_copies.begin(), other_copies.end());
}

}  // namespace servelab
