// BlockManager: admission (OK / LATER / NEVER with the watermark), block tables and slots,
// fork with copy-on-write, release and its errors, swap and recompute preemption, the counters,
// and prefix caching. Where contents matter, plans run through the fake KV cache.
#include "block_manager/block_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "fake_kv_cache.h"
#include "test_helpers.h"

namespace servelab {

// Lets gtest print statuses by name in failure messages.
inline void PrintTo(AllocationStatus status, std::ostream* out) {
  *out << to_string(status);
}

namespace {

using ::servelab::testing::error_message;

using ::servelab::testing::FakeKvCache;
using ::servelab::testing::FakePool;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

BlockManagerConfig make_config(int64_t block_size, int64_t num_gpu_blocks, int64_t num_cpu_blocks,
                               double watermark = 0.0, bool enable_prefix_caching = false) {
  BlockManagerConfig config;
  config.block_size = block_size;
  config.num_gpu_blocks = num_gpu_blocks;
  config.num_cpu_blocks = num_cpu_blocks;
  config.watermark = watermark;
  config.enable_prefix_caching = enable_prefix_caching;
  return config;
}

// `count` distinct token ids starting at `first`: a prompt that shares no block with another
// prompt made with a different `first`.
std::vector<int32_t> tokens(int64_t count, int32_t first = 1000) {
  std::vector<int32_t> result;
  for (int64_t i = 0; i < count; ++i) result.push_back(first + static_cast<int32_t>(i));
  return result;
}

std::vector<int32_t> concat(std::vector<int32_t> head, const std::vector<int32_t>& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

std::set<int32_t> distinct(const std::vector<int32_t>& blocks) {
  return std::set<int32_t>(blocks.begin(), blocks.end());
}

// Runs a prompt's prefill through the fake cache: writes tokens [from, prompt size).
void write_prompt(FakeKvCache& cache, const BlockManager& manager, SequenceId sequence,
                  const std::vector<int32_t>& prompt, int64_t from = 0) {
  for (int64_t position = from; position < static_cast<int64_t>(prompt.size()); ++position) {
    cache.write_token(manager.block_table(sequence), position, prompt[position]);
  }
}

// Appends `token` to the sequence as an engine step would: the copy first, then the write.
AppendResult append_and_write(BlockManager& manager, FakeKvCache& cache, SequenceId sequence,
                              int32_t token) {
  const AppendResult result = manager.append_slot(sequence, token);
  CachePlan plan;
  if (result.copy) plan.copies.push_back(*result.copy);
  cache.apply(plan);
  cache.write_gpu_slot(result.slot, token);
  return result;
}

std::vector<int32_t> read_back(const FakeKvCache& cache, const BlockManager& manager,
                               SequenceId sequence) {
  const FakePool pool =
      manager.is_swapped(manager.request_of(sequence)) ? FakePool::kCpu : FakePool::kGpu;
  return cache.read(pool, manager.block_table(sequence), manager.num_tokens(sequence));
}

// ---- admission --------------------------------------------------------------------------------

TEST(BlockManagerAdmission, BlocksForRoundsUpToWholeBlocks) {
  BlockManager manager(make_config(4, 10, 0));
  EXPECT_EQ(manager.block_size(), 4);
  EXPECT_EQ(manager.blocks_for(0), 0);
  EXPECT_EQ(manager.blocks_for(1), 1);
  EXPECT_EQ(manager.blocks_for(4), 1);
  EXPECT_EQ(manager.blocks_for(5), 2);
  EXPECT_EQ(manager.blocks_for(8), 2);
  EXPECT_EQ(manager.blocks_for(9), 3);
}

TEST(BlockManagerAdmission, WatermarkIsAFractionOfTheGpuPoolInBlocks) {
  EXPECT_EQ(BlockManager(make_config(4, 100, 0, 0.1)).watermark_blocks(), 10);
  EXPECT_EQ(BlockManager(make_config(4, 100, 0, 0.0)).watermark_blocks(), 0);
}

TEST(BlockManagerAdmission, PromptThatFitsAboveTheWatermarkIsOk) {
  BlockManager manager(make_config(4, 100, 0, 0.1));
  EXPECT_EQ(manager.can_allocate(tokens(1)), AllocationStatus::kOk);
  EXPECT_EQ(manager.can_allocate(tokens(90 * 4)), AllocationStatus::kOk);  // leaves exactly 10
}

TEST(BlockManagerAdmission, PromptLargerThanTotalMinusWatermarkIsNever) {
  BlockManager manager(make_config(4, 100, 0, 0.1));
  EXPECT_EQ(manager.can_allocate(tokens(90 * 4 + 1)), AllocationStatus::kNever);  // 91 blocks
  EXPECT_EQ(manager.can_allocate(tokens(100 * 4)), AllocationStatus::kNever);
  // Still NEVER, not LATER, while other requests hold blocks: waiting would not help.
  manager.allocate(1, 1, tokens(50 * 4));
  EXPECT_EQ(manager.can_allocate(tokens(90 * 4 + 1)), AllocationStatus::kNever);
}

TEST(BlockManagerAdmission, PromptThatFitsOnlyByEatingIntoTheWatermarkIsLater) {
  BlockManager manager(make_config(4, 100, 0, 0.1));
  manager.allocate(1, 1, tokens(10 * 4));  // 90 blocks free
  EXPECT_EQ(manager.can_allocate(tokens(80 * 4)), AllocationStatus::kOk);
  EXPECT_EQ(manager.can_allocate(tokens(80 * 4 + 1)), AllocationStatus::kLater);  // 81 of 90
  manager.free_request(1);
  EXPECT_EQ(manager.can_allocate(tokens(80 * 4 + 1)), AllocationStatus::kOk);
}

TEST(BlockManagerAdmission, PromptIsLaterWhileThePoolIsFull) {
  BlockManager manager(make_config(4, 10, 0));
  manager.allocate(1, 1, tokens(10 * 4));
  EXPECT_EQ(manager.can_allocate(tokens(1)), AllocationStatus::kLater);
  manager.free_sequence(1);
  EXPECT_EQ(manager.can_allocate(tokens(1)), AllocationStatus::kOk);
}

TEST(BlockManagerAdmission, MaxTotalTokensThatCouldNeverFitAloneIsNever) {
  BlockManager manager(make_config(4, 100, 0, 0.1));
  EXPECT_EQ(manager.can_allocate(tokens(4), 4 * 250), AllocationStatus::kNever);
  EXPECT_EQ(manager.can_allocate(tokens(4), 4 * 50), AllocationStatus::kOk);
  EXPECT_EQ(manager.can_allocate(tokens(4), 0), AllocationStatus::kOk);  // prompt only
}

TEST(BlockManagerAdmission, SequencesThatCouldNeverGrowTogetherAreNever) {
  BlockManager manager(make_config(4, 100, 0, 0.1));
  // Four samples of 50 blocks each need at least 50 + 3 * 49 blocks, far beyond 100.
  EXPECT_EQ(manager.can_allocate(tokens(4), 4 * 50, 4), AllocationStatus::kNever);
  EXPECT_EQ(manager.can_allocate(tokens(4), 4 * 50, 1), AllocationStatus::kOk);
  EXPECT_EQ(manager.can_allocate(tokens(4), 4 * 20, 4), AllocationStatus::kOk);  // 80 blocks
}

// ---- allocate ---------------------------------------------------------------------------------

TEST(BlockManagerAllocate, BlockTableHoldsCeilOfTokensOverBlockSizeDistinctBlocks) {
  BlockManager manager(make_config(4, 32, 8));
  const std::vector<int64_t> lengths = {1, 4, 5, 8, 9};
  const std::vector<int64_t> expected_blocks = {1, 1, 2, 2, 3};
  std::set<int32_t> all_blocks;
  for (size_t i = 0; i < lengths.size(); ++i) {
    const RequestId request = static_cast<RequestId>(i + 1);
    const SequenceId sequence = static_cast<SequenceId>(10 + i);
    EXPECT_EQ(manager.allocate(request, sequence, tokens(lengths[i])), 0);
    const std::vector<int32_t>& table = manager.block_table(sequence);
    EXPECT_EQ(static_cast<int64_t>(table.size()), expected_blocks[i]) << lengths[i] << " tokens";
    for (int32_t block : table) {
      EXPECT_TRUE(all_blocks.insert(block).second) << "block " << block << " given twice";
      EXPECT_GE(block, 0);
      EXPECT_LT(block, 32);
      EXPECT_EQ(manager.gpu_pool().ref_count(block), 1);
    }
    EXPECT_EQ(manager.num_tokens(sequence), lengths[i]);
    EXPECT_TRUE(manager.has_sequence(sequence));
    EXPECT_TRUE(manager.has_request(request));
    EXPECT_EQ(manager.request_of(sequence), request);
    EXPECT_THAT(manager.sequences_of(request), ElementsAre(sequence));
    EXPECT_FALSE(manager.is_swapped(request));
  }
  EXPECT_EQ(manager.gpu_pool().num_used(), 9);
  EXPECT_EQ(manager.gpu_pool().num_free(), 32 - 9);
  EXPECT_EQ(manager.cpu_pool().num_used(), 0);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerAllocate, ExistingSequenceIdThrowsNamingIt) {
  BlockManager manager(make_config(4, 16, 0));
  manager.allocate(1, 4242, tokens(5));
  EXPECT_THAT(error_message([&] { manager.allocate(2, 4242, tokens(5)); }), HasSubstr("4242"));
  EXPECT_FALSE(manager.has_request(2));
  EXPECT_EQ(manager.gpu_pool().num_used(), 2);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerAllocate, WithoutEnoughFreeBlocksThrowsAndChangesNothing) {
  BlockManager manager(make_config(4, 4, 0));
  manager.allocate(1, 1, tokens(12));
  EXPECT_THROW(manager.allocate(2, 2, tokens(8)), Error);
  EXPECT_FALSE(manager.has_request(2));
  EXPECT_FALSE(manager.has_sequence(2));
  EXPECT_EQ(manager.gpu_pool().num_free(), 1);
  EXPECT_NO_THROW(manager.check_invariants());
}

// ---- append_slot ------------------------------------------------------------------------------

TEST(BlockManagerAppend, SlotFillsTheLastBlockBeforeTakingANewOne) {
  BlockManager manager(make_config(4, 8, 0));
  manager.allocate(1, 1, tokens(3));
  const int32_t first_block = manager.block_table(1)[0];

  AppendResult result = manager.append_slot(1, 7);
  EXPECT_EQ(result.slot, first_block * 4 + 3);
  EXPECT_FALSE(result.copy.has_value());
  EXPECT_EQ(manager.block_table(1).size(), 1u);
  EXPECT_EQ(manager.num_tokens(1), 4);

  result = manager.append_slot(1, 8);  // the first block is full: a new one
  ASSERT_EQ(manager.block_table(1).size(), 2u);
  const int32_t second_block = manager.block_table(1)[1];
  EXPECT_NE(second_block, first_block);
  EXPECT_EQ(result.slot, second_block * 4 + 0);
  EXPECT_FALSE(result.copy.has_value());

  result = manager.append_slot(1, 9);
  EXPECT_EQ(result.slot, second_block * 4 + 1);
  EXPECT_EQ(manager.num_tokens(1), 6);
  EXPECT_EQ(manager.gpu_pool().num_used(), 2);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerAppend, BlockSizeOneTakesABlockPerToken) {
  BlockManager manager(make_config(1, 8, 0));
  manager.allocate(1, 1, tokens(2));
  const AppendResult result = manager.append_slot(1, 5);
  ASSERT_EQ(manager.block_table(1).size(), 3u);
  EXPECT_EQ(result.slot, manager.block_table(1)[2]);
  EXPECT_EQ(manager.gpu_pool().num_used(), 3);
}

TEST(BlockManagerAppend, OnASwappedSequenceThrowsNamingIt) {
  BlockManager manager(make_config(4, 8, 8));
  manager.allocate(1, 31, tokens(5));
  manager.swap_out(1);
  const std::vector<int32_t> table = manager.block_table(31);
  EXPECT_THAT(error_message([&] { manager.append_slot(31, 1); }), HasSubstr("31"));
  EXPECT_EQ(manager.num_tokens(31), 5);
  EXPECT_EQ(manager.block_table(31), table);
  EXPECT_TRUE(manager.is_swapped(1));
  EXPECT_EQ(manager.gpu_pool().num_used(), 0);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerAppend, WithoutAFreeBlockThrowsAndChangesNothing) {
  BlockManager manager(make_config(4, 2, 0));
  manager.allocate(1, 1, tokens(8));  // the pool is full and so is the last block
  EXPECT_THROW(manager.append_slot(1, 1), Error);
  EXPECT_EQ(manager.num_tokens(1), 8);
  EXPECT_EQ(manager.block_table(1).size(), 2u);
  EXPECT_EQ(manager.gpu_pool().num_free(), 0);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerAppend, CanAppendSlotsCountsEverySequenceThatNeedsABlock) {
  BlockManager manager(make_config(4, 4, 0));
  manager.allocate(1, 1, tokens(4));  // one full block
  manager.fork(1, 2);                 // both sequences need a new block for their next token
  EXPECT_TRUE(manager.can_append_slots(1));
  manager.allocate(2, 3, tokens(8));  // leaves one free block
  EXPECT_FALSE(manager.can_append_slots(1));
  EXPECT_NO_THROW(manager.append_slot(1, 5));
  EXPECT_THROW(manager.append_slot(2, 5), Error);
  EXPECT_EQ(manager.num_tokens(2), 4);
  EXPECT_NO_THROW(manager.check_invariants());
}

// ---- fork and copy-on-write -------------------------------------------------------------------

TEST(BlockManagerFork, ChildSharesEveryBlockOfItsParent) {
  BlockManager manager(make_config(4, 8, 0));
  manager.allocate(1, 1, tokens(6));
  manager.fork(1, 2);
  EXPECT_EQ(manager.block_table(2), manager.block_table(1));
  EXPECT_EQ(manager.num_tokens(2), 6);
  EXPECT_EQ(manager.request_of(2), 1);
  EXPECT_THAT(manager.sequences_of(1), ElementsAre(1, 2));
  for (int32_t block : manager.block_table(1)) EXPECT_EQ(manager.gpu_pool().ref_count(block), 2);
  EXPECT_EQ(manager.gpu_pool().num_used(), 2);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerFork, FirstWriterToASharedPartialBlockGetsACopyTheOtherKeepsIt) {
  BlockManager manager(make_config(4, 8, 0));
  FakeKvCache cache(8, 0, 4);
  const std::vector<int32_t> prompt = tokens(6);
  manager.allocate(1, 1, prompt);
  write_prompt(cache, manager, 1, prompt);
  manager.fork(1, 2);
  const int32_t full_block = manager.block_table(1)[0];
  const int32_t partial_block = manager.block_table(1)[1];

  const AppendResult child = append_and_write(manager, cache, 2, 77);
  ASSERT_TRUE(child.copy.has_value());
  const int32_t private_block = manager.block_table(2)[1];
  EXPECT_EQ(*child.copy, (BlockCopy{partial_block, private_block}));
  EXPECT_NE(private_block, partial_block);
  EXPECT_EQ(manager.block_table(2)[0], full_block);
  EXPECT_EQ(child.slot, private_block * 4 + 2);
  EXPECT_EQ(manager.gpu_pool().ref_count(partial_block), 1);
  EXPECT_EQ(manager.gpu_pool().ref_count(full_block), 2);
  EXPECT_EQ(manager.stats().copy_on_writes, 1);

  const AppendResult parent = append_and_write(manager, cache, 1, 88);
  EXPECT_FALSE(parent.copy.has_value());
  EXPECT_EQ(parent.slot, partial_block * 4 + 2);
  EXPECT_EQ(manager.block_table(1), (std::vector<int32_t>{full_block, partial_block}));
  EXPECT_EQ(manager.stats().copy_on_writes, 1);

  EXPECT_EQ(read_back(cache, manager, 1), concat(prompt, {88}));
  EXPECT_EQ(read_back(cache, manager, 2), concat(prompt, {77}));
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerFork, SharedFullLastBlockNeedsNoCopy) {
  BlockManager manager(make_config(4, 8, 0));
  manager.allocate(1, 1, tokens(8));
  manager.fork(1, 2);
  const AppendResult child = manager.append_slot(2, 5);
  const AppendResult parent = manager.append_slot(1, 6);
  EXPECT_FALSE(child.copy.has_value());
  EXPECT_FALSE(parent.copy.has_value());
  ASSERT_EQ(manager.block_table(1).size(), 3u);
  ASSERT_EQ(manager.block_table(2).size(), 3u);
  EXPECT_NE(manager.block_table(1)[2], manager.block_table(2)[2]);
  EXPECT_EQ(manager.block_table(1)[1], manager.block_table(2)[1]);
  EXPECT_EQ(child.slot, manager.block_table(2)[2] * 4);
  EXPECT_EQ(parent.slot, manager.block_table(1)[2] * 4);
  EXPECT_EQ(manager.stats().copy_on_writes, 0);
  EXPECT_EQ(manager.gpu_pool().num_used(), 4);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerFork, UnknownParentThrowsNamingIt) {
  BlockManager manager(make_config(4, 8, 0));
  EXPECT_THAT(error_message([&] { manager.fork(777, 2); }), HasSubstr("777"));
  EXPECT_FALSE(manager.has_sequence(2));
}

TEST(BlockManagerFork, ExistingChildIdThrowsNamingIt) {
  BlockManager manager(make_config(4, 8, 0));
  manager.allocate(1, 1, tokens(5));
  manager.allocate(2, 5151, tokens(5));
  EXPECT_THAT(error_message([&] { manager.fork(1, 5151); }), HasSubstr("5151"));
  EXPECT_EQ(manager.request_of(5151), 2);
  EXPECT_THAT(manager.sequences_of(1), ElementsAre(1));
  EXPECT_NO_THROW(manager.check_invariants());
}

// ---- release ----------------------------------------------------------------------------------

TEST(BlockManagerRelease, FreeSequenceReleasesOnlyBlocksNoOtherSequenceHolds) {
  BlockManager manager(make_config(4, 8, 0));
  manager.allocate(1, 1, tokens(6));
  manager.fork(1, 2);
  manager.append_slot(2, 9);  // the child now owns a copy of the last block
  EXPECT_EQ(manager.gpu_pool().num_used(), 3);
  manager.free_sequence(2);
  EXPECT_FALSE(manager.has_sequence(2));
  EXPECT_TRUE(manager.has_request(1));
  EXPECT_THAT(manager.sequences_of(1), ElementsAre(1));
  EXPECT_EQ(manager.gpu_pool().num_used(), 2);
  for (int32_t block : manager.block_table(1)) EXPECT_EQ(manager.gpu_pool().ref_count(block), 1);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerRelease, FreeingTheLastSequenceEndsTheRequest) {
  BlockManager manager(make_config(4, 8, 0));
  manager.allocate(1, 1, tokens(6));
  manager.free_sequence(1);
  EXPECT_FALSE(manager.has_request(1));
  EXPECT_EQ(manager.gpu_pool().num_free(), 8);
}

TEST(BlockManagerRelease, FreeRequestReleasesEverySequenceOnEitherPool) {
  BlockManager manager(make_config(4, 16, 16));
  manager.allocate(1, 1, tokens(6));
  manager.fork(1, 2);
  manager.append_slot(2, 3);
  manager.allocate(2, 3, tokens(9, 2000));
  manager.fork(3, 4);
  manager.swap_out(2);
  manager.free_request(1);
  manager.free_request(2);
  for (SequenceId sequence : {1, 2, 3, 4}) EXPECT_FALSE(manager.has_sequence(sequence));
  EXPECT_FALSE(manager.has_request(1));
  EXPECT_FALSE(manager.has_request(2));
  EXPECT_EQ(manager.gpu_pool().num_free(), 16);
  EXPECT_EQ(manager.cpu_pool().num_free(), 16);
  EXPECT_EQ(manager.gpu_pool().num_used(), 0);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerRelease, FreeingASequenceTwiceThrowsNamingIt) {
  BlockManager manager(make_config(4, 8, 0));
  manager.allocate(1, 6161, tokens(6));
  manager.fork(6161, 2);
  manager.free_sequence(6161);
  EXPECT_THAT(error_message([&] { manager.free_sequence(6161); }), HasSubstr("6161"));
  EXPECT_EQ(manager.gpu_pool().num_used(), 2);  // the fork still holds the blocks
  for (int32_t block : manager.block_table(2)) EXPECT_EQ(manager.gpu_pool().ref_count(block), 1);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerRelease, FreeingAnUnknownSequenceThrowsNamingIt) {
  BlockManager manager(make_config(4, 8, 0));
  manager.allocate(1, 1, tokens(6));
  EXPECT_THAT(error_message([&] { manager.free_sequence(9191); }), HasSubstr("9191"));
  EXPECT_EQ(manager.gpu_pool().num_used(), 2);
}

TEST(BlockManagerRelease, FreeingAnUnknownOrFreedRequestThrowsNamingIt) {
  BlockManager manager(make_config(4, 8, 0));
  manager.allocate(7171, 1, tokens(6));
  EXPECT_THAT(error_message([&] { manager.free_request(8181); }), HasSubstr("8181"));
  EXPECT_EQ(manager.gpu_pool().num_used(), 2);
  manager.free_request(7171);
  EXPECT_THAT(error_message([&] { manager.free_request(7171); }), HasSubstr("7171"));
  EXPECT_EQ(manager.gpu_pool().num_free(), 8);
}

TEST(BlockManagerRelease, OperationsOnAnUnknownSequenceThrowNamingIt) {
  BlockManager manager(make_config(4, 8, 8));
  manager.allocate(1, 1, tokens(6));
  EXPECT_THAT(error_message([&] { manager.block_table(9090); }), HasSubstr("9090"));
  EXPECT_THAT(error_message([&] { manager.num_tokens(9090); }), HasSubstr("9090"));
  EXPECT_THAT(error_message([&] { manager.request_of(9090); }), HasSubstr("9090"));
  EXPECT_THAT(error_message([&] { manager.append_slot(9090, 1); }), HasSubstr("9090"));
  EXPECT_THAT(error_message([&] { manager.mark_computed(9090); }), HasSubstr("9090"));
  EXPECT_EQ(manager.gpu_pool().num_used(), 2);
}

TEST(BlockManagerRelease, OperationsOnAnUnknownRequestThrowNamingIt) {
  BlockManager manager(make_config(4, 8, 8));
  manager.allocate(1, 1, tokens(6));
  EXPECT_THAT(error_message([&] { manager.sequences_of(8080); }), HasSubstr("8080"));
  EXPECT_THAT(error_message([&] { manager.is_swapped(8080); }), HasSubstr("8080"));
  EXPECT_THAT(error_message([&] { manager.can_append_slots(8080); }), HasSubstr("8080"));
  EXPECT_THAT(error_message([&] { manager.can_swap_out(8080); }), HasSubstr("8080"));
  EXPECT_THAT(error_message([&] { manager.can_swap_in(8080); }), HasSubstr("8080"));
  EXPECT_THAT(error_message([&] { manager.swap_out(8080); }), HasSubstr("8080"));
  EXPECT_THAT(error_message([&] { manager.swap_in(8080); }), HasSubstr("8080"));
  EXPECT_THAT(error_message([&] { manager.preempt_by_recompute(8080); }), HasSubstr("8080"));
  EXPECT_EQ(manager.gpu_pool().num_used(), 2);
  EXPECT_NO_THROW(manager.check_invariants());
}

// ---- swap -------------------------------------------------------------------------------------

// Request 1 with sequences 1 and 2 that share two full blocks and own one partial block each:
// four distinct GPU blocks, written through `cache`. Returns the sequences' token histories.
std::map<SequenceId, std::vector<int32_t>> make_forked_request(BlockManager& manager,
                                                               FakeKvCache& cache) {
  const std::vector<int32_t> prompt = tokens(10);
  manager.allocate(1, 1, prompt);
  write_prompt(cache, manager, 1, prompt);
  manager.fork(1, 2);
  append_and_write(manager, cache, 1, 11);
  append_and_write(manager, cache, 2, 22);
  return {{1, concat(prompt, {11})}, {2, concat(prompt, {22})}};
}

TEST(BlockManagerSwap, SwapOutMovesEachDistinctBlockOnceAndKeepsSharing) {
  BlockManager manager(make_config(4, 8, 8));
  FakeKvCache cache(8, 8, 4);
  const auto histories = make_forked_request(manager, cache);
  const std::vector<int32_t> gpu_table_1 = manager.block_table(1);
  const std::vector<int32_t> gpu_table_2 = manager.block_table(2);
  std::set<int32_t> gpu_blocks = distinct(gpu_table_1);
  for (int32_t block : gpu_table_2) gpu_blocks.insert(block);
  ASSERT_EQ(gpu_blocks.size(), 4u);
  ASSERT_TRUE(manager.can_swap_out(1));

  const std::vector<BlockMove> moves = manager.swap_out(1);
  ASSERT_EQ(moves.size(), 4u);
  std::map<int32_t, int32_t> gpu_to_cpu;
  std::set<int32_t> cpu_blocks;
  for (const BlockMove& move : moves) {
    EXPECT_TRUE(gpu_blocks.count(move.source)) << "moved GPU block " << move.source;
    EXPECT_TRUE(gpu_to_cpu.emplace(move.source, move.destination).second);
    EXPECT_TRUE(cpu_blocks.insert(move.destination).second);
  }
  EXPECT_TRUE(manager.is_swapped(1));
  for (size_t i = 0; i < gpu_table_1.size(); ++i) {
    EXPECT_EQ(manager.block_table(1)[i], gpu_to_cpu[gpu_table_1[i]]);
    EXPECT_EQ(manager.block_table(2)[i], gpu_to_cpu[gpu_table_2[i]]);
  }
  EXPECT_EQ(manager.block_table(1)[0], manager.block_table(2)[0]);
  EXPECT_EQ(manager.cpu_pool().ref_count(manager.block_table(1)[0]), 2);
  EXPECT_EQ(manager.cpu_pool().ref_count(manager.block_table(1)[2]), 1);
  EXPECT_EQ(manager.gpu_pool().num_used(), 0);
  EXPECT_EQ(manager.cpu_pool().num_used(), 4);
  EXPECT_EQ(manager.stats().swap_outs, 1);
  EXPECT_EQ(manager.stats().blocks_swapped_out, 4);

  cache.apply(CachePlan{moves, {}, {}});
  EXPECT_EQ(read_back(cache, manager, 1), histories.at(1));
  EXPECT_EQ(read_back(cache, manager, 2), histories.at(2));
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerSwap, SwapInBringsTheRequestBackSharingAgainWithItsTokens) {
  BlockManager manager(make_config(4, 8, 8));
  FakeKvCache cache(8, 8, 4);
  const auto histories = make_forked_request(manager, cache);
  cache.apply(CachePlan{manager.swap_out(1), {}, {}});
  const std::vector<int32_t> cpu_table_1 = manager.block_table(1);
  const std::vector<int32_t> cpu_table_2 = manager.block_table(2);

  // Another request takes the GPU blocks meanwhile and overwrites them.
  const std::vector<int32_t> other = tokens(8 * 4, 5000);
  manager.allocate(2, 3, other);
  write_prompt(cache, manager, 3, other);
  manager.free_request(2);

  ASSERT_TRUE(manager.can_swap_in(1));
  const std::vector<BlockMove> moves = manager.swap_in(1);
  ASSERT_EQ(moves.size(), 4u);
  std::map<int32_t, int32_t> cpu_to_gpu;
  for (const BlockMove& move : moves) cpu_to_gpu.emplace(move.source, move.destination);
  EXPECT_FALSE(manager.is_swapped(1));
  for (size_t i = 0; i < cpu_table_1.size(); ++i) {
    EXPECT_EQ(manager.block_table(1)[i], cpu_to_gpu[cpu_table_1[i]]);
    EXPECT_EQ(manager.block_table(2)[i], cpu_to_gpu[cpu_table_2[i]]);
  }
  EXPECT_EQ(manager.block_table(1)[1], manager.block_table(2)[1]);
  EXPECT_EQ(manager.gpu_pool().ref_count(manager.block_table(1)[1]), 2);
  EXPECT_EQ(manager.gpu_pool().num_used(), 4);
  EXPECT_EQ(manager.cpu_pool().num_used(), 0);
  EXPECT_EQ(manager.stats().swap_ins, 1);
  EXPECT_EQ(manager.stats().blocks_swapped_in, 4);

  cache.apply(CachePlan{{}, moves, {}});
  EXPECT_EQ(read_back(cache, manager, 1), histories.at(1));
  EXPECT_EQ(read_back(cache, manager, 2), histories.at(2));
  // Both sequences can grow again; the shared blocks are full, so no copy is needed.
  EXPECT_FALSE(append_and_write(manager, cache, 1, 12).copy.has_value());
  EXPECT_EQ(read_back(cache, manager, 1), concat(histories.at(1), {12}));
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerSwap, CanSwapOutIsFalseWhenTheCpuPoolIsTooSmall) {
  BlockManager manager(make_config(4, 8, 3));
  FakeKvCache cache(8, 3, 4);
  make_forked_request(manager, cache);  // four distinct blocks, three CPU blocks
  const std::vector<int32_t> table = manager.block_table(1);
  EXPECT_FALSE(manager.can_swap_out(1));
  EXPECT_THROW(manager.swap_out(1), Error);
  EXPECT_FALSE(manager.is_swapped(1));
  EXPECT_EQ(manager.block_table(1), table);
  EXPECT_EQ(manager.gpu_pool().num_used(), 4);
  EXPECT_EQ(manager.cpu_pool().num_free(), 3);
  EXPECT_EQ(manager.stats().swap_outs, 0);
  EXPECT_NO_THROW(manager.check_invariants());

  BlockManager roomy(make_config(4, 8, 4));
  make_forked_request(roomy, cache);
  EXPECT_TRUE(roomy.can_swap_out(1));
}

TEST(BlockManagerSwap, SwapInWithoutRoomThrowsAndChangesNothing) {
  BlockManager manager(make_config(4, 8, 8));
  FakeKvCache cache(8, 8, 4);
  make_forked_request(manager, cache);
  manager.swap_out(1);
  const std::vector<int32_t> cpu_table_1 = manager.block_table(1);
  const std::vector<int32_t> cpu_table_2 = manager.block_table(2);
  manager.allocate(2, 3, tokens(8 * 4, 5000));  // the whole GPU pool
  EXPECT_FALSE(manager.can_swap_in(1));
  EXPECT_THROW(manager.swap_in(1), Error);
  EXPECT_TRUE(manager.is_swapped(1));
  EXPECT_EQ(manager.block_table(1), cpu_table_1);
  EXPECT_EQ(manager.block_table(2), cpu_table_2);
  EXPECT_EQ(manager.cpu_pool().num_used(), 4);
  EXPECT_EQ(manager.gpu_pool().num_free(), 0);
  EXPECT_EQ(manager.stats().swap_ins, 0);
  EXPECT_EQ(manager.stats().blocks_swapped_in, 0);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerSwap, CanSwapInLeavesRoomForOneTokenPerSequence) {
  BlockManager manager(make_config(4, 12, 12));
  manager.allocate(1, 1, tokens(8));  // two full blocks: each sequence's next token needs a block
  manager.fork(1, 2);
  manager.swap_out(1);
  manager.allocate(2, 3, tokens(10 * 4, 5000));  // two blocks free: the request, not its growth
  EXPECT_FALSE(manager.can_swap_in(1));
  manager.free_request(2);
  manager.allocate(2, 3, tokens(8 * 4, 5000));  // four free
  EXPECT_TRUE(manager.can_swap_in(1));
}

TEST(BlockManagerSwap, CanSwapInKeepsTheWatermarkFree) {
  BlockManager manager(make_config(4, 10, 10, 0.1));  // watermark: one block
  ASSERT_EQ(manager.watermark_blocks(), 1);
  manager.allocate(1, 1, tokens(8));
  manager.fork(1, 2);
  manager.swap_out(1);
  manager.allocate(2, 3, tokens(6 * 4, 5000));  // four free: two blocks plus two new ones
  EXPECT_FALSE(manager.can_swap_in(1));
  manager.free_request(2);
  manager.allocate(2, 3, tokens(5 * 4, 5000));  // five free
  EXPECT_TRUE(manager.can_swap_in(1));
}

// A scheduler step that preempts one request and resumes another: swap_out first, then swap_in,
// then one merged plan. The swap-in may land on the GPU blocks the swap-out just gave up; the
// plan's order (swap-outs first) reads them before they are overwritten.
TEST(BlockManagerSwap, SwapOutThenSwapInOfOneStepKeepEveryToken) {
  BlockManager manager(make_config(4, 4, 4));
  FakeKvCache cache(4, 4, 4);
  const std::vector<int32_t> prompt_a = tokens(7, 100);
  const std::vector<int32_t> prompt_b = tokens(8, 200);
  manager.allocate(1, 1, prompt_a);
  write_prompt(cache, manager, 1, prompt_a);
  cache.apply(CachePlan{manager.swap_out(1), {}, {}});
  manager.allocate(2, 2, prompt_b);
  write_prompt(cache, manager, 2, prompt_b);
  manager.allocate(3, 3, tokens(8, 300));  // the GPU pool is full
  write_prompt(cache, manager, 3, tokens(8, 300));
  manager.free_request(3);

  CachePlan step;
  ASSERT_TRUE(manager.can_swap_out(2));
  step.swap_out = manager.swap_out(2);
  ASSERT_TRUE(manager.can_swap_in(1));
  step.swap_in = manager.swap_in(1);
  cache.apply(step);
  EXPECT_EQ(read_back(cache, manager, 1), prompt_a);
  EXPECT_EQ(read_back(cache, manager, 2), prompt_b);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerSwap, SwappingTheWrongWayThrowsNamingTheRequest) {
  BlockManager manager(make_config(4, 8, 8));
  manager.allocate(3131, 1, tokens(6));
  EXPECT_THAT(error_message([&] { manager.swap_in(3131); }), HasSubstr("3131"));
  manager.swap_out(3131);
  EXPECT_THAT(error_message([&] { manager.swap_out(3131); }), HasSubstr("3131"));
  EXPECT_TRUE(manager.is_swapped(3131));
  EXPECT_EQ(manager.cpu_pool().num_used(), 2);
  EXPECT_EQ(manager.stats().swap_outs, 1);
  EXPECT_NO_THROW(manager.check_invariants());
}

// ---- preemption by recompute ------------------------------------------------------------------

TEST(BlockManagerPreempt, RecomputeFreesEveryBlockAndCounts) {
  BlockManager manager(make_config(4, 8, 8));
  manager.allocate(1, 1, tokens(6));
  manager.fork(1, 2);
  manager.append_slot(2, 3);
  ASSERT_EQ(manager.gpu_pool().num_used(), 3);
  manager.preempt_by_recompute(1);
  EXPECT_FALSE(manager.has_request(1));
  EXPECT_FALSE(manager.has_sequence(1));
  EXPECT_FALSE(manager.has_sequence(2));
  EXPECT_EQ(manager.gpu_pool().num_free(), 8);
  EXPECT_EQ(manager.stats().recompute_preemptions, 1);
  EXPECT_NO_THROW(manager.check_invariants());
  // The caller runs the request again from its prompt plus what it generated.
  EXPECT_EQ(manager.allocate(1, 1, tokens(7)), 0);
  EXPECT_EQ(manager.block_table(1).size(), 2u);
}

// ---- stats ------------------------------------------------------------------------------------

TEST(BlockManagerStats, StartAtZeroWithEveryBlockFree) {
  BlockManager manager(make_config(4, 10, 5));
  const BlockManagerStats stats = manager.stats();
  EXPECT_EQ(stats.gpu_blocks_total, 10);
  EXPECT_EQ(stats.gpu_blocks_free, 10);
  EXPECT_EQ(stats.gpu_blocks_used, 0);
  EXPECT_EQ(stats.cpu_blocks_total, 5);
  EXPECT_EQ(stats.cpu_blocks_free, 5);
  EXPECT_EQ(stats.gpu_usage, 0.0);
  EXPECT_EQ(stats.swap_outs + stats.swap_ins + stats.recompute_preemptions, 0);
  EXPECT_EQ(stats.copy_on_writes + stats.prefix_queries + stats.prefix_hits, 0);
  EXPECT_EQ(stats.prefix_hit_rate(), 0.0);
}

TEST(BlockManagerStats, PoolCountersAndUsageFollowAllocationsAndSwaps) {
  BlockManager manager(make_config(4, 10, 5));
  manager.allocate(1, 1, tokens(9));
  BlockManagerStats stats = manager.stats();
  EXPECT_EQ(stats.gpu_blocks_used, 3);
  EXPECT_EQ(stats.gpu_blocks_free, 7);
  EXPECT_DOUBLE_EQ(stats.gpu_usage, 0.3);
  EXPECT_EQ(stats.cpu_blocks_used, 0);
  manager.swap_out(1);
  stats = manager.stats();
  EXPECT_EQ(stats.gpu_blocks_used, 0);
  EXPECT_EQ(stats.cpu_blocks_used, 3);
  EXPECT_EQ(stats.cpu_blocks_free, 2);
  EXPECT_DOUBLE_EQ(stats.cpu_usage, 0.6);
  EXPECT_EQ(stats.gpu_usage, 0.0);
}

TEST(BlockManagerStats, CountSwapsBlocksMovedPreemptionsAndCopies) {
  BlockManager manager(make_config(4, 16, 16));
  FakeKvCache cache(16, 16, 4);
  make_forked_request(manager, cache);  // one copy-on-write, four distinct blocks
  for (int round = 0; round < 2; ++round) {
    manager.swap_out(1);
    manager.swap_in(1);
  }
  manager.allocate(2, 3, tokens(5, 3000));
  manager.preempt_by_recompute(2);
  const BlockManagerStats stats = manager.stats();
  EXPECT_EQ(stats.copy_on_writes, 1);
  EXPECT_EQ(stats.swap_outs, 2);
  EXPECT_EQ(stats.swap_ins, 2);
  EXPECT_EQ(stats.blocks_swapped_out, 8);
  EXPECT_EQ(stats.blocks_swapped_in, 8);
  EXPECT_EQ(stats.recompute_preemptions, 1);
}

// ---- prefix caching ---------------------------------------------------------------------------

TEST(BlockManagerPrefixCache, SecondRequestWithTheSamePromptReusesComputedWholeBlocks) {
  BlockManager manager(make_config(4, 16, 0, 0.0, true));
  FakeKvCache cache(16, 0, 4);
  const std::vector<int32_t> prompt = tokens(10);
  EXPECT_EQ(manager.allocate(1, 1, prompt), 0);
  write_prompt(cache, manager, 1, prompt);
  manager.mark_computed(1);

  const int64_t cached = manager.allocate(2, 2, prompt);
  EXPECT_EQ(cached, 8);
  const std::vector<int32_t>& first = manager.block_table(1);
  const std::vector<int32_t>& second = manager.block_table(2);
  ASSERT_EQ(second.size(), 3u);
  EXPECT_EQ(second[0], first[0]);
  EXPECT_EQ(second[1], first[1]);
  EXPECT_NE(second[2], first[2]);
  EXPECT_EQ(manager.gpu_pool().ref_count(first[0]), 2);
  EXPECT_EQ(manager.gpu_pool().num_used(), 4);
  EXPECT_EQ(cache.read(FakePool::kGpu, second, cached),
            std::vector<int32_t>(prompt.begin(), prompt.begin() + cached));
  write_prompt(cache, manager, 2, prompt, cached);
  EXPECT_EQ(read_back(cache, manager, 2), prompt);
  EXPECT_EQ(manager.stats().prefix_hits, 2);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerPrefixCache, PromptOfWholeBlocksRecomputesItsLastBlock) {
  BlockManager manager(make_config(4, 16, 0, 0.0, true));
  const std::vector<int32_t> prompt = tokens(8);
  manager.allocate(1, 1, prompt);
  manager.mark_computed(1);
  // The step needs at least one prompt token to compute logits from, so the last block is not
  // taken from the cache even though it is there.
  EXPECT_EQ(manager.allocate(2, 2, prompt), 4);
  EXPECT_EQ(manager.block_table(2)[0], manager.block_table(1)[0]);
  EXPECT_NE(manager.block_table(2)[1], manager.block_table(1)[1]);
  EXPECT_EQ(manager.stats().prefix_hits, 1);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerPrefixCache, HitRateIsHitsOverQueries) {
  BlockManager manager(make_config(4, 32, 0, 0.0, true));
  const std::vector<int32_t> prompt = tokens(13);  // three full blocks
  manager.allocate(1, 1, prompt);
  manager.mark_computed(1);
  manager.allocate(2, 2, prompt);
  const BlockManagerStats stats = manager.stats();
  EXPECT_EQ(stats.prefix_hits, 3);
  EXPECT_GE(stats.prefix_queries, 4);  // the second request's three, at least one of the first's
  EXPECT_LE(stats.prefix_queries, 6);
  EXPECT_DOUBLE_EQ(stats.prefix_hit_rate(),
                   static_cast<double>(stats.prefix_hits) / stats.prefix_queries);
}

TEST(BlockManagerPrefixCache, NothingIsFoundBeforeMarkComputed) {
  BlockManager manager(make_config(4, 16, 0, 0.0, true));
  const std::vector<int32_t> prompt = tokens(10);
  manager.allocate(1, 1, prompt);
  EXPECT_EQ(manager.allocate(2, 2, prompt), 0);
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(manager.block_table(2)[i], manager.block_table(1)[i]);
  EXPECT_EQ(manager.stats().prefix_hits, 0);
  EXPECT_EQ(manager.gpu_pool().num_used(), 6);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerPrefixCache, BlocksOfFinishedRequestsStayCachedAndAreReused) {
  BlockManager manager(make_config(4, 16, 0, 0.0, true));
  const std::vector<int32_t> prompt = tokens(10);
  manager.allocate(1, 1, prompt);
  manager.mark_computed(1);
  const std::vector<int32_t> finished_table = manager.block_table(1);
  manager.free_request(1);
  BlockManagerStats stats = manager.stats();
  EXPECT_EQ(stats.gpu_blocks_free, 16);
  EXPECT_EQ(stats.gpu_blocks_used, 0);
  EXPECT_EQ(stats.gpu_blocks_cached, 2);  // the two full blocks; the partial one is forgotten

  EXPECT_EQ(manager.allocate(2, 2, prompt), 8);
  EXPECT_EQ(manager.block_table(2)[0], finished_table[0]);
  EXPECT_EQ(manager.block_table(2)[1], finished_table[1]);
  stats = manager.stats();
  EXPECT_EQ(stats.gpu_blocks_cached, 0);
  EXPECT_EQ(stats.gpu_blocks_used, 3);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerPrefixCache, CachedBlocksAreEvictedLeastRecentlyUsedFirst) {
  BlockManager manager(make_config(2, 4, 0, 0.0, true));
  const std::vector<int32_t> prompt_a = {1, 2, 3};  // one full block and a partial one
  const std::vector<int32_t> prompt_b = {5, 6, 7};
  manager.allocate(1, 1, prompt_a);
  manager.mark_computed(1);
  const int32_t block_a = manager.block_table(1)[0];
  manager.free_request(1);
  manager.allocate(2, 2, prompt_b);
  manager.mark_computed(2);
  const int32_t block_b = manager.block_table(2)[0];
  manager.free_request(2);
  ASSERT_EQ(manager.stats().gpu_blocks_cached, 2);

  // Three blocks: the two never-cached ones, then the least recently used cached one (A's).
  manager.allocate(3, 3, {9, 9, 8, 8, 7});
  const std::vector<int32_t>& table = manager.block_table(3);
  EXPECT_NE(std::find(table.begin(), table.end(), block_a), table.end());
  EXPECT_EQ(std::find(table.begin(), table.end(), block_b), table.end());
  EXPECT_EQ(manager.stats().gpu_blocks_cached, 1);
  manager.free_request(3);

  EXPECT_EQ(manager.allocate(4, 4, prompt_a), 0);  // evicted
  EXPECT_EQ(manager.allocate(5, 5, prompt_b), 2);  // still cached
  EXPECT_EQ(manager.block_table(5)[0], block_b);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerPrefixCache, OffMeansNoHitsAndNothingCached) {
  BlockManager manager(make_config(4, 16, 0, 0.0, false));
  const std::vector<int32_t> prompt = tokens(10);
  manager.allocate(1, 1, prompt);
  manager.mark_computed(1);
  EXPECT_EQ(manager.allocate(2, 2, prompt), 0);
  EXPECT_EQ(manager.gpu_pool().num_used(), 6);
  manager.free_request(1);
  manager.free_request(2);
  EXPECT_EQ(manager.allocate(3, 3, prompt), 0);
  const BlockManagerStats stats = manager.stats();
  EXPECT_EQ(stats.prefix_hits, 0);
  EXPECT_EQ(stats.gpu_blocks_cached, 0);
  EXPECT_EQ(stats.prefix_hit_rate(), 0.0);
}

TEST(BlockManagerPrefixCache, SameLaterBlockAfterADifferentPrefixDoesNotMatch) {
  BlockManager manager(make_config(4, 16, 0, 0.0, true));
  const std::vector<int32_t> first = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<int32_t> second = {9, 9, 9, 9, 5, 6, 7, 8, 9};  // same second block
  manager.allocate(1, 1, first);
  manager.mark_computed(1);
  EXPECT_EQ(manager.allocate(2, 2, second), 0);
  EXPECT_TRUE(distinct(manager.block_table(1)) != distinct(manager.block_table(2)));
  for (int32_t block : manager.block_table(2)) EXPECT_EQ(manager.gpu_pool().ref_count(block), 1);
  EXPECT_EQ(manager.stats().prefix_hits, 0);
}

TEST(BlockManagerPrefixCache, PromptsMatchUpToTheFirstBlockThatDiffers) {
  BlockManager manager(make_config(4, 16, 0, 0.0, true));
  const std::vector<int32_t> first = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
  const std::vector<int32_t> second = {1, 2, 3, 4, 5, 6, 0, 8, 9, 10, 11, 12, 13};
  manager.allocate(1, 1, first);
  manager.mark_computed(1);
  EXPECT_EQ(manager.allocate(2, 2, second), 4);
  EXPECT_EQ(manager.block_table(2)[0], manager.block_table(1)[0]);
  for (size_t i = 1; i < 4; ++i) EXPECT_NE(manager.block_table(2)[i], manager.block_table(1)[i]);
}

TEST(BlockManagerPrefixCache, AppendedTokensBecomeReusableOnceComputed) {
  BlockManager manager(make_config(4, 16, 0, 0.0, true));
  std::vector<int32_t> history = tokens(6);
  manager.allocate(1, 1, history);
  manager.mark_computed(1);  // the prefill ran: one full block and half of the next
  for (int32_t token : {50, 51}) {
    manager.append_slot(1, token);
    history.push_back(token);
  }
  // The second block is full now, but no step has written its last two tokens yet.
  const std::vector<int32_t> next_prompt = concat(history, {60});
  EXPECT_EQ(manager.allocate(2, 2, next_prompt), 4);
  manager.free_request(2);
  manager.mark_computed(1);
  EXPECT_EQ(manager.allocate(3, 3, next_prompt), 8);
  EXPECT_EQ(manager.block_table(3)[1], manager.block_table(1)[1]);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerPrefixCache, CanAllocateCountsHitsAsAlreadyAllocated) {
  const std::vector<int32_t> prompt = tokens(10);  // three blocks, two of them cacheable
  for (bool prefix_caching : {false, true}) {
    SCOPED_TRACE(prefix_caching ? "prefix caching on" : "prefix caching off");
    BlockManager manager(make_config(4, 4, 0, 0.0, prefix_caching));
    manager.allocate(1, 1, prompt);
    manager.mark_computed(1);  // one block left free
    if (!prefix_caching) {
      EXPECT_EQ(manager.can_allocate(prompt), AllocationStatus::kLater);
      continue;
    }
    EXPECT_EQ(manager.can_allocate(prompt), AllocationStatus::kOk);
    EXPECT_EQ(manager.allocate(2, 2, prompt), 8);
    EXPECT_EQ(manager.gpu_pool().num_free(), 0);
    EXPECT_NO_THROW(manager.check_invariants());
  }
}

TEST(BlockManagerPrefixCache, SwapInReusesBlocksStillCachedOnTheGpu) {
  BlockManager manager(make_config(4, 8, 8, 0.0, true));
  FakeKvCache cache(8, 8, 4);
  const std::vector<int32_t> prompt = tokens(10);
  manager.allocate(1, 1, prompt);
  write_prompt(cache, manager, 1, prompt);
  manager.mark_computed(1);
  const std::vector<int32_t> gpu_table = manager.block_table(1);
  const std::vector<BlockMove> out = manager.swap_out(1);
  EXPECT_EQ(out.size(), 3u);
  cache.apply(CachePlan{out, {}, {}});
  EXPECT_EQ(manager.stats().gpu_blocks_cached, 2);

  const std::vector<BlockMove> in = manager.swap_in(1);
  cache.apply(CachePlan{{}, in, {}});
  EXPECT_EQ(in.size(), 1u);  // only the partial block travels
  EXPECT_EQ(manager.block_table(1)[0], gpu_table[0]);
  EXPECT_EQ(manager.block_table(1)[1], gpu_table[1]);
  EXPECT_EQ(read_back(cache, manager, 1), prompt);
  EXPECT_EQ(manager.cpu_pool().num_used(), 0);
  EXPECT_NO_THROW(manager.check_invariants());
}

TEST(BlockManagerPrefixCache, RecomputedRequestFindsItsOwnComputedBlocks) {
  BlockManager manager(make_config(4, 16, 0, 0.0, true));
  std::vector<int32_t> history = tokens(6);
  manager.allocate(1, 1, history);
  for (int32_t token : {40, 41, 42}) {
    manager.append_slot(1, token);
    history.push_back(token);
  }
  manager.mark_computed(1);
  manager.preempt_by_recompute(1);
  EXPECT_EQ(manager.stats().gpu_blocks_cached, 2);
  EXPECT_EQ(manager.allocate(1, 1, history), 8);  // 9 tokens: two blocks come from the cache
  EXPECT_NO_THROW(manager.check_invariants());
}

}  // namespace
}  // namespace servelab
