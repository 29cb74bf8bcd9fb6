// The waste arithmetic of benchmarks/kv_waste_model.h on tiny traces whose numbers can be worked
// out by hand (the benchmark itself runs on the real trace; these keep its accounting honest).
#include "kv_waste_model.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace servelab {
namespace {

TraceRequest request(double arrival_seconds, int64_t prompt_tokens, int64_t output_tokens) {
  return {arrival_seconds, prompt_tokens, output_tokens};
}

TEST(KvWasteModel, PagedStepsHoldWholeBlocksForPromptPlusGeneratedTokens) {
  // Prompt 10, output 5, blocks of 8: steps hold 11..15 tokens, always in 2 blocks = 16 slots.
  const std::vector<SlotSample> samples =
      request_step_samples(request(0, 10, 5), KvScheme::paged(8));
  ASSERT_EQ(samples.size(), 5u);
  for (size_t step = 0; step < samples.size(); ++step) {
    EXPECT_EQ(samples[step].allocated_slots, 16) << "step " << step + 1;
    EXPECT_EQ(samples[step].used_slots, 11 + static_cast<int64_t>(step)) << "step " << step + 1;
  }
}

TEST(KvWasteModel, PagedTakesANewBlockWhenTheLastOneIsFull) {
  // Prompt 6, output 4, blocks of 8: 7, 8 tokens in one block; 9, 10 in two.
  const std::vector<SlotSample> samples =
      request_step_samples(request(0, 6, 4), KvScheme::paged(8));
  ASSERT_EQ(samples.size(), 4u);
  const int64_t expected_allocated[] = {8, 8, 16, 16};
  for (size_t step = 0; step < samples.size(); ++step) {
    EXPECT_EQ(samples[step].allocated_slots, expected_allocated[step]) << "step " << step + 1;
    EXPECT_EQ(samples[step].used_slots, 7 + static_cast<int64_t>(step));
  }
}

TEST(KvWasteModel, LifetimeWasteSumsSlotsOverStepsAndTakesTheLastStepAtEnd) {
  const std::vector<TraceRequest> trace = {request(0, 10, 5), request(1, 6, 4)};
  const LifetimeWaste paged = measure_lifetime_waste(trace, KvScheme::paged(8));
  EXPECT_EQ(paged.scheme, "paged-8");
  EXPECT_EQ(paged.requests, 2);
  EXPECT_EQ(paged.rejected_requests, 0);
  // 5 x 16 + (8 + 8 + 16 + 16); used (11+...+15) + (7+...+10).
  EXPECT_EQ(paged.allocated_slot_steps, 80 + 48);
  EXPECT_EQ(paged.used_slot_steps, 65 + 34);
  EXPECT_DOUBLE_EQ(paged.waste_fraction(), (128.0 - 99.0) / 128.0);
  EXPECT_EQ(paged.allocated_slots_at_end, 16 + 16);
  EXPECT_EQ(paged.used_slots_at_end, 15 + 10);
  EXPECT_DOUBLE_EQ(paged.waste_fraction_at_end(), 7.0 / 32.0);
  EXPECT_EQ(paged.max_wasted_slots_at_end, 6);
}

TEST(KvWasteModel, ContiguousReservesMaxLengthEveryStepAndRejectsLongerRequests) {
  // Prompt 10 + output 5 fits 32 slots; prompt 30 + output 5 does not and is left out.
  const std::vector<TraceRequest> trace = {request(0, 10, 5), request(1, 30, 5)};
  const LifetimeWaste naive = measure_lifetime_waste(trace, KvScheme::contiguous(32));
  EXPECT_EQ(naive.scheme, "contiguous-32");
  EXPECT_EQ(naive.requests, 1);
  EXPECT_EQ(naive.rejected_requests, 1);
  EXPECT_EQ(naive.allocated_slot_steps, 5 * 32);
  EXPECT_EQ(naive.used_slot_steps, 65);
  EXPECT_DOUBLE_EQ(naive.waste_fraction(), 95.0 / 160.0);
  EXPECT_EQ(naive.allocated_slots_at_end, 32);
  EXPECT_EQ(naive.used_slots_at_end, 15);
  EXPECT_EQ(naive.max_wasted_slots_at_end, 17);
}

TEST(KvWasteModel, BlocksOfOneTokenWasteNothing) {
  const std::vector<TraceRequest> trace = {request(0, 10, 5), request(1, 6, 4), request(2, 1, 9)};
  const LifetimeWaste paged = measure_lifetime_waste(trace, KvScheme::paged(1));
  EXPECT_EQ(paged.allocated_slot_steps, paged.used_slot_steps);
  EXPECT_EQ(paged.waste_fraction(), 0.0);
}

TEST(KvWasteModel, PagedWasteAtEndIsLessThanOneBlockPerRequest) {
  std::vector<TraceRequest> trace;
  for (int64_t i = 0; i < 50; ++i) trace.push_back(request(i, 1 + 7 * i % 97, 1 + 13 * i % 41));
  for (int64_t block_size : {4, 16, 32}) {
    const LifetimeWaste paged = measure_lifetime_waste(trace, KvScheme::paged(block_size));
    EXPECT_LT(paged.max_wasted_slots_at_end, block_size);
    EXPECT_GT(paged.allocated_slots_at_end, paged.used_slots_at_end);
  }
}

TEST(KvWasteModel, LedgerFreesEverythingAndRefusesWhatTheSchemeCannotHold) {
  KvLedger paged(KvScheme::paged(8), 10);
  paged.start(1, 9);
  paged.start(2, 3);
  paged.append_token(2);
  EXPECT_EQ(paged.total().allocated_slots, 16 + 8);
  EXPECT_EQ(paged.total().used_slots, 9 + 4);
  EXPECT_EQ(paged.live_requests(), 2);
  EXPECT_THROW(paged.start(1, 5), Error);  // already live
  paged.finish(1);
  paged.finish(2);
  EXPECT_EQ(paged.total().allocated_slots, 0);
  EXPECT_EQ(paged.total().used_slots, 0);
  EXPECT_THROW(paged.append_token(1), Error);  // no longer live

  KvLedger naive(KvScheme::contiguous(4), 0);
  EXPECT_THROW(naive.start(1, 5), Error);
  naive.start(2, 4);
  EXPECT_THROW(naive.append_token(2), Error);
}

TEST(KvWasteModel, ConcurrentReplaySamplesEveryLiveRequestOnTheTickGrid) {
  // Binary-exact times so that no tick falls a rounding error away from a token:
  // A arrives at 0, prompt 10, 3 tokens at 0, 0.25, 0.5, freed at 0.75;
  // B arrives at 0.25, prompt 4, 4 tokens at 0.25, 0.5, 0.75, 1.0, freed at 1.25.
  const std::vector<TraceRequest> trace = {request(0, 10, 3), request(0.25, 4, 4)};
  ConcurrentOptions options;
  options.seconds_per_token = 0.25;
  options.tick_seconds = 0.5;
  const std::vector<ConcurrentWaste> results = simulate_concurrent(
      trace, {KvScheme::paged(8), KvScheme::contiguous(16), KvScheme::contiguous(12)}, options);
  ASSERT_EQ(results.size(), 3u);

  // Ticks 0, 0.5, 1.0, 1.5: A holds 11, 13, -, -; B holds -, 6, 8, -.
  const ConcurrentWaste& paged = results[0];
  EXPECT_EQ(paged.scheme, "paged-8");
  ASSERT_EQ(paged.samples.size(), 4u);
  const int64_t paged_allocated[] = {16, 16 + 8, 8, 0};
  const int64_t used[] = {11, 13 + 6, 8, 0};
  const int64_t live[] = {1, 2, 1, 0};
  for (size_t tick = 0; tick < 4; ++tick) {
    EXPECT_EQ(paged.samples[tick].allocated_slots, paged_allocated[tick]) << "tick " << tick;
    EXPECT_EQ(paged.samples[tick].used_slots, used[tick]) << "tick " << tick;
    EXPECT_EQ(paged.live_requests[tick], live[tick]) << "tick " << tick;
  }
  EXPECT_DOUBLE_EQ(paged.mean_allocated_slots, 48.0 / 4);
  EXPECT_DOUBLE_EQ(paged.mean_used_slots, 38.0 / 4);
  EXPECT_DOUBLE_EQ(paged.waste_fraction(), (12.0 - 9.5) / 12.0);
  EXPECT_EQ(paged.peak_allocated_slots, 24);
  EXPECT_EQ(paged.peak_used_slots, 19);
  EXPECT_EQ(paged.peak_live_requests, 2);
  EXPECT_DOUBLE_EQ(paged.mean_live_requests, 1.0);
  EXPECT_DOUBLE_EQ(paged.allocated_slots_per_live_request(), 12.0);

  const ConcurrentWaste& naive = results[1];  // both fit 16 slots
  EXPECT_EQ(naive.requests, 2);
  const int64_t naive_allocated[] = {16, 32, 16, 0};
  for (size_t tick = 0; tick < 4; ++tick) {
    EXPECT_EQ(naive.samples[tick].allocated_slots, naive_allocated[tick]) << "tick " << tick;
    EXPECT_EQ(naive.samples[tick].used_slots, used[tick]) << "tick " << tick;
  }
  EXPECT_EQ(naive.peak_allocated_slots, 32);

  const ConcurrentWaste& short_naive = results[2];  // A needs 13 > 12: rejected
  EXPECT_EQ(short_naive.requests, 1);
  EXPECT_EQ(short_naive.rejected_requests, 1);
  const int64_t short_allocated[] = {0, 12, 12, 0};
  const int64_t short_used[] = {0, 6, 8, 0};
  for (size_t tick = 0; tick < 4; ++tick) {
    EXPECT_EQ(short_naive.samples[tick].allocated_slots, short_allocated[tick]) << "tick " << tick;
    EXPECT_EQ(short_naive.samples[tick].used_slots, short_used[tick]) << "tick " << tick;
  }
}

}  // namespace
}  // namespace servelab
