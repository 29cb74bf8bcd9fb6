// Lab 05: the block manager's admission answer, its growth with copy-on-write, and swapping.
// Small pools (a handful of blocks of 4 tokens) so that every number can be checked by hand.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "block_manager/block_manager.h"
#include "common/error.h"

namespace servelab {
namespace {

using ::testing::HasSubstr;

BlockManagerConfig small_pools(int64_t gpu_blocks, int64_t cpu_blocks = 8, double watermark = 0.0) {
  BlockManagerConfig config;
  config.block_size = 4;
  config.num_gpu_blocks = gpu_blocks;
  config.num_cpu_blocks = cpu_blocks;
  config.watermark = watermark;
  return config;
}

std::vector<int32_t> tokens(int count, int32_t first = 100) {
  std::vector<int32_t> result;
  for (int i = 0; i < count; ++i) result.push_back(first + i);
  return result;
}

// ---- lab05-can-allocate -------------------------------------------------------------------------

TEST(Lab05CanAllocate, APromptThatFitsIsOk) {
  BlockManager manager(small_pools(4));
  EXPECT_EQ(manager.can_allocate(tokens(16)), AllocationStatus::kOk);  // exactly 4 blocks
  EXPECT_EQ(manager.can_allocate(tokens(1)), AllocationStatus::kOk);
}

TEST(Lab05CanAllocate, APromptLargerThanTheWholePoolIsNever) {
  BlockManager manager(small_pools(4));
  EXPECT_EQ(manager.can_allocate(tokens(17)), AllocationStatus::kNever);
}

TEST(Lab05CanAllocate, APromptThatFitsOnceOthersFinishIsLater) {
  BlockManager manager(small_pools(4));
  manager.allocate(1, 1, tokens(9));  // 3 blocks
  EXPECT_EQ(manager.can_allocate(tokens(4)), AllocationStatus::kOk);
  EXPECT_EQ(manager.can_allocate(tokens(5)), AllocationStatus::kLater);
  manager.free_request(1);
  EXPECT_EQ(manager.can_allocate(tokens(5)), AllocationStatus::kOk);
}

TEST(Lab05CanAllocate, TheWatermarkIsKeptFreeForRunningSequences) {
  // 20 blocks, watermark 10%: 2 blocks stay free at admission.
  BlockManager manager(small_pools(20, 0, 0.1));
  ASSERT_EQ(manager.watermark_blocks(), 2);
  EXPECT_EQ(manager.can_allocate(tokens(18 * 4)), AllocationStatus::kOk);
  EXPECT_EQ(manager.can_allocate(tokens(18 * 4 + 1)), AllocationStatus::kNever)
      << "19 blocks can never be admitted: only 18 lie above the watermark";
  manager.allocate(1, 1, tokens(10 * 4));
  EXPECT_EQ(manager.can_allocate(tokens(8 * 4)), AllocationStatus::kOk);
  EXPECT_EQ(manager.can_allocate(tokens(9 * 4)), AllocationStatus::kLater)
      << "9 more blocks would leave 1 free, under the watermark of 2";
}

TEST(Lab05CanAllocate, ARequestThatCouldNeverFinishAloneIsNever) {
  BlockManager manager(small_pools(8));
  // The prompt fits, but prompt + new tokens would need 9 blocks: it could never finish.
  EXPECT_EQ(manager.can_allocate(tokens(8), 36), AllocationStatus::kNever);
  EXPECT_EQ(manager.can_allocate(tokens(8), 32), AllocationStatus::kOk);
  // Two samples share the 2 prompt blocks, then need 6 each of their own: 14 > 8.
  EXPECT_EQ(manager.can_allocate(tokens(8), 32, 2), AllocationStatus::kNever);
  EXPECT_EQ(manager.can_allocate(tokens(8), 20, 2), AllocationStatus::kOk);  // 2 + 2 * 3
}

TEST(Lab05CanAllocate, CachedPrefixBlocksNeedNoNewBlocks) {
  BlockManagerConfig config = small_pools(6);
  config.enable_prefix_caching = true;
  BlockManager manager(config);
  const std::vector<int32_t> shared = tokens(13);  // 3 full blocks + 1
  manager.allocate(1, 1, shared);
  manager.mark_computed(1);
  // 4 blocks used, 2 free. A prompt with the same first 12 tokens and 4 more needs 4 blocks, of
  // which 3 are cached: the 1 new one fits.
  std::vector<int32_t> longer = tokens(12);
  for (int32_t t : tokens(4, 900)) longer.push_back(t);
  EXPECT_EQ(manager.can_allocate(longer), AllocationStatus::kOk);
  std::vector<int32_t> other = tokens(16, 500);  // nothing cached: 4 new blocks, 2 free
  EXPECT_EQ(manager.can_allocate(other), AllocationStatus::kLater);
}

// ---- lab05-append-slot --------------------------------------------------------------------------

TEST(Lab05AppendSlot, SlotsFillTheLastBlockThenTakeANewOne) {
  BlockManager manager(small_pools(8));
  manager.allocate(1, 1, tokens(6));  // blocks 0 and 1; positions 4, 5 in block 1
  const std::vector<int32_t> table = manager.block_table(1);
  ASSERT_EQ(table.size(), 2u);
  AppendResult first = manager.append_slot(1, 7);  // position 6
  EXPECT_EQ(first.slot, table[1] * 4 + 2);
  EXPECT_FALSE(first.copy.has_value());
  AppendResult second = manager.append_slot(1, 8);  // position 7: the block is now full
  EXPECT_EQ(second.slot, table[1] * 4 + 3);
  AppendResult third = manager.append_slot(1, 9);  // position 8: a new block
  ASSERT_EQ(manager.block_table(1).size(), 3u);
  EXPECT_EQ(third.slot, manager.block_table(1)[2] * 4 + 0);
  EXPECT_EQ(manager.num_tokens(1), 9);
  EXPECT_EQ(manager.gpu_pool().num_free(), 5);
  manager.check_invariants();
}

TEST(Lab05AppendSlot, TheFirstWriteToASharedBlockGetsAPrivateCopy) {
  BlockManager manager(small_pools(8));
  manager.allocate(1, 10, tokens(6));  // 2 blocks, the last half full
  manager.fork(10, 11);
  const std::vector<int32_t> shared = manager.block_table(10);
  EXPECT_EQ(manager.block_table(11), shared);
  EXPECT_EQ(manager.gpu_pool().ref_count(shared[1]), 2);

  AppendResult child = manager.append_slot(11, 42);
  ASSERT_TRUE(child.copy.has_value()) << "block " << shared[1] << " is shared: copy it first";
  EXPECT_EQ(child.copy->source, shared[1]);
  const int32_t copy = child.copy->destination;
  EXPECT_NE(copy, shared[1]);
  EXPECT_EQ(manager.block_table(11), (std::vector<int32_t>{shared[0], copy}));
  EXPECT_EQ(child.slot, copy * 4 + 2);
  EXPECT_EQ(manager.gpu_pool().ref_count(shared[1]), 1);
  EXPECT_EQ(manager.gpu_pool().ref_count(shared[0]), 2) << "the full first block stays shared";

  AppendResult parent = manager.append_slot(10, 43);  // now the only owner: no copy
  EXPECT_FALSE(parent.copy.has_value());
  EXPECT_EQ(parent.slot, shared[1] * 4 + 2);
  EXPECT_EQ(manager.stats().copy_on_writes, 1);
  manager.check_invariants();
}

TEST(Lab05AppendSlot, AFullSharedBlockIsNeverCopied) {
  BlockManager manager(small_pools(8));
  manager.allocate(1, 10, tokens(8));  // 2 full blocks
  manager.fork(10, 11);
  AppendResult child = manager.append_slot(11, 1);
  EXPECT_FALSE(child.copy.has_value()) << "the token starts a new block; nothing shared is written";
  EXPECT_EQ(manager.block_table(11).size(), 3u);
  EXPECT_EQ(manager.stats().copy_on_writes, 0);
  manager.check_invariants();
}

TEST(Lab05AppendSlot, WithoutAFreeBlockItThrowsAndChangesNothing) {
  BlockManager manager(small_pools(2));
  manager.allocate(1, 1, tokens(7));
  EXPECT_EQ(manager.append_slot(1, 5).slot, manager.block_table(1)[1] * 4 + 3);  // fills block 2
  EXPECT_FALSE(manager.can_append_slots(1));
  EXPECT_THROW(manager.append_slot(1, 5), Error);
  EXPECT_EQ(manager.num_tokens(1), 8);
  EXPECT_EQ(manager.block_table(1).size(), 2u);
  manager.check_invariants();
}

// ---- lab05-swap ---------------------------------------------------------------------------------

TEST(Lab05Swap, SwapOutMovesEachDistinctBlockOnceAndKeepsSharing) {
  BlockManager manager(small_pools(8, 8));
  manager.allocate(7, 1, tokens(6));  // blocks a, b
  manager.fork(1, 2);
  manager.append_slot(2, 1);  // sequence 2 copies b into c: tables [a, b] and [a, c]
  const int32_t a = manager.block_table(1)[0];
  ASSERT_TRUE(manager.can_swap_out(7));
  std::vector<BlockMove> moves = manager.swap_out(7);
  EXPECT_EQ(moves.size(), 3u) << "a is shared: it moves once";
  EXPECT_TRUE(manager.is_swapped(7));
  EXPECT_EQ(manager.gpu_pool().num_free(), 8);
  EXPECT_EQ(manager.cpu_pool().num_used(), 3);
  // Both tables now point into the CPU pool, still sharing a's copy.
  EXPECT_EQ(manager.block_table(1)[0], manager.block_table(2)[0]);
  int32_t a_on_cpu = -1;
  for (const BlockMove& move : moves)
    if (move.source == a) a_on_cpu = move.destination;
  EXPECT_EQ(manager.block_table(1)[0], a_on_cpu);
  EXPECT_EQ(manager.cpu_pool().ref_count(a_on_cpu), 2);
  manager.check_invariants();
}

TEST(Lab05Swap, SwapInBringsTheRequestBackWithItsSharing) {
  BlockManager manager(small_pools(8, 8));
  manager.allocate(7, 1, tokens(6));
  manager.fork(1, 2);
  manager.append_slot(2, 1);
  std::vector<BlockMove> out = manager.swap_out(7);
  ASSERT_TRUE(manager.can_swap_in(7));
  std::vector<BlockMove> in = manager.swap_in(7);
  EXPECT_EQ(in.size(), out.size());
  EXPECT_FALSE(manager.is_swapped(7));
  EXPECT_EQ(manager.cpu_pool().num_free(), 8);
  EXPECT_EQ(manager.gpu_pool().num_used(), 3);
  EXPECT_EQ(manager.block_table(1)[0], manager.block_table(2)[0]);
  EXPECT_EQ(manager.gpu_pool().ref_count(manager.block_table(1)[0]), 2);
  // Every CPU block a swap-out wrote is read back by exactly one swap-in move.
  for (const BlockMove& move : out) {
    int reads = 0;
    for (const BlockMove& back : in) reads += back.source == move.destination;
    EXPECT_EQ(reads, 1) << "CPU block " << move.destination;
  }
  EXPECT_EQ(manager.stats().swap_outs, 1);
  EXPECT_EQ(manager.stats().swap_ins, 1);
  EXPECT_EQ(manager.stats().blocks_swapped_in, 3);
  manager.check_invariants();
}

TEST(Lab05Swap, SwappingInWithoutRoomThrowsAndChangesNothing) {
  BlockManager manager(small_pools(4, 8));
  manager.allocate(1, 1, tokens(12));  // 3 blocks
  manager.swap_out(1);
  manager.allocate(2, 2, tokens(8));  // 2 of the 4 GPU blocks
  EXPECT_FALSE(manager.can_swap_in(1));
  try {
    manager.swap_in(1);
    FAIL() << "swap_in without room must throw";
  } catch (const Error& error) {
    EXPECT_THAT(error.what(), HasSubstr("request 1 needs 3 free GPU blocks"));
  }
  EXPECT_TRUE(manager.is_swapped(1));
  EXPECT_EQ(manager.cpu_pool().num_used(), 3);
  manager.check_invariants();
}

TEST(Lab05Swap, SwapOutWithoutRoomOnTheCpuIsRefused) {
  BlockManager manager(small_pools(8, 2));
  manager.allocate(2, 2, tokens(8));
  EXPECT_EQ(manager.swap_out(2).size(), 2u);  // fills the CPU pool
  manager.allocate(1, 1, tokens(4));
  EXPECT_FALSE(manager.can_swap_out(1));
  EXPECT_THROW(manager.swap_out(1), Error);
  EXPECT_FALSE(manager.is_swapped(1));
  manager.check_invariants();
}

}  // namespace
}  // namespace servelab
