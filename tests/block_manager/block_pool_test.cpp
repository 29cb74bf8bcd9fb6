// BlockPool: free blocks, reference counts, and the prefix cache's registry with its LRU eviction.
#include "block_manager/block_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "block_manager/cache_plan.h"
#include "common/error.h"
#include "test_helpers.h"

namespace servelab {
namespace {

using ::servelab::testing::error_message;

using ::testing::HasSubstr;

// Allocates a block and registers it as holding the computed prefix `hash`.
int32_t allocate_computed(BlockPool& pool, uint64_t hash) {
  const int32_t block = pool.allocate();
  pool.set_hash(block, hash);
  pool.mark_computed(block);
  return block;
}

TEST(BlockPool, StartsWithEveryBlockFree) {
  BlockPool pool("GPU", 5, false);
  EXPECT_EQ(pool.name(), "GPU");
  EXPECT_EQ(pool.num_blocks(), 5);
  EXPECT_EQ(pool.num_free(), 5);
  EXPECT_EQ(pool.num_used(), 0);
  EXPECT_EQ(pool.num_cached_free(), 0);
  for (int32_t block = 0; block < 5; ++block) EXPECT_EQ(pool.ref_count(block), 0);
}

TEST(BlockPool, AllocateHandsOutEachBlockOnceThenThrowsNamingThePool) {
  BlockPool pool("GPU", 4, false);
  std::set<int32_t> handed_out;
  for (int i = 0; i < 4; ++i) {
    const int32_t block = pool.allocate();
    EXPECT_GE(block, 0);
    EXPECT_LT(block, 4);
    EXPECT_TRUE(handed_out.insert(block).second) << "block " << block << " handed out twice";
    EXPECT_EQ(pool.ref_count(block), 1);
    EXPECT_EQ(pool.num_free() + pool.num_used(), 4);
  }
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_EQ(pool.num_used(), 4);
  EXPECT_THAT(error_message([&] { pool.allocate(); }), HasSubstr("GPU"));
  EXPECT_EQ(pool.num_used(), 4);
}

TEST(BlockPool, ReleasedBlockCanBeAllocatedAgain) {
  BlockPool pool("CPU", 2, false);
  const int32_t first = pool.allocate();
  const int32_t second = pool.allocate();
  pool.release(first);
  EXPECT_EQ(pool.ref_count(first), 0);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(pool.allocate(), first);
  EXPECT_EQ(pool.ref_count(second), 1);
}

TEST(BlockPool, SharedBlockStaysUsedUntilItsLastReferenceIsReleased) {
  BlockPool pool("GPU", 3, false);
  const int32_t block = pool.allocate();
  pool.add_reference(block);
  pool.add_reference(block);
  EXPECT_EQ(pool.ref_count(block), 3);
  EXPECT_EQ(pool.num_used(), 1);
  pool.release(block);
  pool.release(block);
  EXPECT_EQ(pool.ref_count(block), 1);
  EXPECT_EQ(pool.num_used(), 1);
  pool.release(block);
  EXPECT_EQ(pool.ref_count(block), 0);
  EXPECT_EQ(pool.num_free(), 3);
}

TEST(BlockPool, DoubleReleaseThrowsNamingPoolAndBlock) {
  BlockPool pool("GPU", 8, false);
  pool.allocate();
  const int32_t block = pool.allocate();
  pool.release(block);
  const std::string message = error_message([&] { pool.release(block); });
  EXPECT_THAT(message, HasSubstr("GPU"));
  EXPECT_THAT(message, HasSubstr(std::to_string(block)));
  EXPECT_EQ(pool.num_free(), 7);
  EXPECT_EQ(pool.ref_count(block), 0);
}

TEST(BlockPool, ReleasingANeverAllocatedBlockThrows) {
  BlockPool pool("CPU", 4, false);
  const std::string message = error_message([&] { pool.release(3); });
  EXPECT_THAT(message, HasSubstr("CPU"));
  EXPECT_THAT(message, HasSubstr("3"));
  EXPECT_EQ(pool.num_free(), 4);
}

TEST(BlockPool, BlockIdsOutsideThePoolThrowInsteadOfReadingOutOfBounds) {
  BlockPool pool("GPU", 4, true);
  EXPECT_THROW(pool.ref_count(4), Error);
  EXPECT_THROW(pool.ref_count(-1), Error);
  EXPECT_THROW(pool.release(4), Error);
  EXPECT_THROW(pool.add_reference(-1), Error);
  EXPECT_THROW(pool.set_hash(17, 1), Error);
  EXPECT_THROW(pool.mark_computed(4), Error);
  EXPECT_EQ(pool.num_free(), 4);
}

// ---- prefix caching -------------------------------------------------------------------------

TEST(BlockPool, LookupFindsARegisteredBlockOnlyOnceItIsComputed) {
  BlockPool pool("GPU", 4, true);
  const int32_t block = pool.allocate();
  pool.set_hash(block, 42);
  EXPECT_TRUE(pool.has_hash(block));
  EXPECT_EQ(pool.hash(block), 42u);
  EXPECT_FALSE(pool.computed(block));
  EXPECT_EQ(pool.lookup(42), std::nullopt);
  pool.mark_computed(block);
  EXPECT_TRUE(pool.computed(block));
  EXPECT_EQ(pool.lookup(42), block);
  EXPECT_EQ(pool.lookup(43), std::nullopt);
}

TEST(BlockPool, LookupFindsNothingWhenPrefixCachingIsOff) {
  BlockPool pool("GPU", 4, false);
  EXPECT_FALSE(pool.prefix_caching());
  const int32_t block = allocate_computed(pool, 42);
  EXPECT_EQ(pool.lookup(42), std::nullopt);
  pool.release(block);
  EXPECT_EQ(pool.num_cached_free(), 0);
  EXPECT_EQ(pool.lookup(42), std::nullopt);
}

TEST(BlockPool, ReleasedComputedBlockStaysCachedAndFreeUntilReused) {
  BlockPool pool("GPU", 4, true);
  const int32_t block = allocate_computed(pool, 42);
  pool.release(block);
  EXPECT_EQ(pool.num_free(), 4);  // a cached block is still allocatable
  EXPECT_EQ(pool.num_cached_free(), 1);
  EXPECT_EQ(pool.lookup(42), block);

  pool.add_reference(block);  // a new request reuses the cached prefix
  EXPECT_EQ(pool.ref_count(block), 1);
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_EQ(pool.num_cached_free(), 0);
  EXPECT_EQ(pool.lookup(42), block);
}

TEST(BlockPool, ReleasingAnUncomputedHashedBlockForgetsItsPrefix) {
  BlockPool pool("GPU", 4, true);
  const int32_t uncomputed = pool.allocate();
  const int32_t later = pool.allocate();
  pool.set_hash(uncomputed, 42);
  pool.release(uncomputed);
  EXPECT_EQ(pool.num_cached_free(), 0);
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_EQ(pool.lookup(42), std::nullopt);
  // Had the released block stayed the entry for 42, `later` would become a private copy and
  // lookup would miss.
  pool.set_hash(later, 42);
  pool.mark_computed(later);
  EXPECT_EQ(pool.lookup(42), later);
}

TEST(BlockPool, SetHashOfASecondBlockWithTheSamePrefixKeepsItPrivate) {
  BlockPool pool("GPU", 4, true);
  const int32_t entry = allocate_computed(pool, 7);
  const int32_t copy = allocate_computed(pool, 7);
  EXPECT_EQ(pool.lookup(7), entry);
  // The private copy is forgotten when released; the entry stays found.
  pool.release(copy);
  EXPECT_EQ(pool.num_cached_free(), 0);
  EXPECT_EQ(pool.lookup(7), entry);
  pool.release(entry);
  EXPECT_EQ(pool.num_cached_free(), 1);
  EXPECT_EQ(pool.lookup(7), entry);
}

TEST(BlockPool, AllocatePrefersNeverCachedBlocksOverCachedOnes) {
  BlockPool pool("GPU", 3, true);
  const int32_t cached = allocate_computed(pool, 5);
  pool.release(cached);
  const int32_t first = pool.allocate();
  const int32_t second = pool.allocate();
  EXPECT_NE(first, cached);
  EXPECT_NE(second, cached);
  EXPECT_EQ(pool.lookup(5), cached);
  // The pool is now out of never-cached blocks: the cached one is evicted and forgets its prefix.
  EXPECT_EQ(pool.allocate(), cached);
  EXPECT_EQ(pool.lookup(5), std::nullopt);
  EXPECT_FALSE(pool.has_hash(cached));
  EXPECT_FALSE(pool.computed(cached));
  EXPECT_EQ(pool.num_cached_free(), 0);
}

TEST(BlockPool, EvictionTakesTheLeastRecentlyReleasedCachedBlockFirst) {
  BlockPool pool("GPU", 3, true);
  const int32_t a = allocate_computed(pool, 1);
  const int32_t b = allocate_computed(pool, 2);
  const int32_t c = allocate_computed(pool, 3);
  pool.release(b);
  pool.release(a);
  pool.release(c);
  EXPECT_EQ(pool.num_cached_free(), 3);
  EXPECT_EQ(pool.allocate(), b);
  EXPECT_EQ(pool.lookup(2), std::nullopt);
  EXPECT_EQ(pool.lookup(1), a);
  EXPECT_EQ(pool.lookup(3), c);
  EXPECT_EQ(pool.allocate(), a);
  EXPECT_EQ(pool.lookup(3), c);
  EXPECT_EQ(pool.allocate(), c);
  EXPECT_EQ(pool.num_cached_free(), 0);
  EXPECT_THROW(pool.allocate(), Error);
}

TEST(BlockPool, ReusingACachedBlockMakesItMostRecentlyUsed) {
  BlockPool pool("GPU", 2, true);
  const int32_t a = allocate_computed(pool, 1);
  const int32_t b = allocate_computed(pool, 2);
  pool.release(a);
  pool.release(b);  // LRU order: a, b
  pool.add_reference(a);
  pool.release(a);  // LRU order: b, a
  EXPECT_EQ(pool.allocate(), b);
  EXPECT_EQ(pool.lookup(1), a);
}

TEST(BlockPool, CopyPrefixStateCarriesHashAndComputedAcrossPools) {
  BlockPool gpu("GPU", 2, true);
  BlockPool cpu("CPU", 2, true);
  const int32_t gpu_block = allocate_computed(gpu, 99);
  const int32_t cpu_block = cpu.allocate();
  cpu.copy_prefix_state(cpu_block, gpu, gpu_block);
  EXPECT_TRUE(cpu.has_hash(cpu_block));
  EXPECT_EQ(cpu.hash(cpu_block), 99u);
  EXPECT_TRUE(cpu.computed(cpu_block));

  const int32_t plain_gpu = gpu.allocate();
  const int32_t other_cpu = cpu.allocate();
  cpu.copy_prefix_state(other_cpu, gpu, plain_gpu);
  EXPECT_FALSE(cpu.has_hash(other_cpu));
  EXPECT_FALSE(cpu.computed(other_cpu));
}

// ---- CachePlan --------------------------------------------------------------------------------

TEST(CachePlan, AppendKeepsEachListInOrderAfterTheFirstPlans) {
  CachePlan plan;
  EXPECT_TRUE(plan.empty());
  plan.swap_out.push_back({1, 2});
  CachePlan later;
  later.swap_out.push_back({3, 4});
  later.swap_in.push_back({5, 6});
  later.copies.push_back({7, 8});
  plan.append(later);
  EXPECT_FALSE(plan.empty());
  EXPECT_EQ(plan.swap_out, (std::vector<BlockMove>{{1, 2}, {3, 4}}));
  EXPECT_EQ(plan.swap_in, (std::vector<BlockMove>{{5, 6}}));
  EXPECT_EQ(plan.copies, (std::vector<BlockCopy>{{7, 8}}));
  CachePlan only_copy;
  only_copy.copies.push_back({0, 1});
  EXPECT_FALSE(only_copy.empty());
}

}  // namespace
}  // namespace servelab
