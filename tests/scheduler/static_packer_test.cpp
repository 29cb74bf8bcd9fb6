// Unit tests of the static batcher's packing policy: pack() and should_pack_now().
#include "scheduler/static_packer.h"

#include <gtest/gtest.h>

#include <deque>
#include <utility>
#include <vector>

namespace servelab {
namespace {

GenerationConfig greedy_config() {
  return GenerationConfig{};
}

GenerationConfig sampling_config() {
  GenerationConfig config;
  config.do_sample = true;
  config.temperature = 0.7;
  return config;
}

WaitingRequest waiting(RequestId id, const GenerationConfig& config, double arrival = 0.0) {
  return WaitingRequest{id, config, workload_of(config), arrival};
}

WaitingRequest waiting_with_n(RequestId id, int64_t n) {
  GenerationConfig config;
  config.num_return_sequences = n;
  return waiting(id, config);
}

std::vector<RequestId> ids_of(const std::deque<WaitingRequest>& queue) {
  std::vector<RequestId> ids;
  for (const WaitingRequest& request : queue) ids.push_back(request.id);
  return ids;
}

TEST(StaticPacker, EmptyQueueGivesNoPackage) {
  std::deque<WaitingRequest> queue;
  EXPECT_FALSE(pack(queue, 8).has_value());
  EXPECT_TRUE(queue.empty());
}

TEST(StaticPacker, OneRequestMakesAPackageOfItself) {
  std::deque<WaitingRequest> queue{waiting(7, sampling_config())};
  const std::optional<Package> package = pack(queue, 8);
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->requests, std::vector<RequestId>{7});
  EXPECT_EQ(package->workload, 1);
  EXPECT_EQ(package->config, sampling_config());
  EXPECT_TRUE(queue.empty());
}

TEST(StaticPacker, PacksOnlyIdenticalConfigsAndOthersKeepTheirOrder) {
  GenerationConfig other_seed = greedy_config();
  other_seed.seed = 1;
  std::deque<WaitingRequest> queue{waiting(1, greedy_config()), waiting(2, sampling_config()),
                                   waiting(3, greedy_config()), waiting(4, other_seed),
                                   waiting(5, greedy_config()), waiting(6, sampling_config())};
  const std::optional<Package> package = pack(queue, 8);
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->requests, (std::vector<RequestId>{1, 3, 5}));
  EXPECT_EQ(package->workload, 3);
  EXPECT_EQ(package->config, greedy_config());
  EXPECT_EQ(ids_of(queue), (std::vector<RequestId>{2, 4, 6}));

  // The next package is made of the new head's config.
  const std::optional<Package> second = pack(queue, 8);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->requests, (std::vector<RequestId>{2, 6}));
  EXPECT_EQ(ids_of(queue), (std::vector<RequestId>{4}));
}

TEST(StaticPacker, GreedySpelledDifferentlyIsNotMerged) {
  GenerationConfig temperature_zero;
  temperature_zero.do_sample = true;
  temperature_zero.temperature = 0.0;
  std::deque<WaitingRequest> queue{waiting(1, greedy_config()), waiting(2, temperature_zero)};
  EXPECT_EQ(pack(queue, 8)->requests, std::vector<RequestId>{1});
  EXPECT_EQ(ids_of(queue), std::vector<RequestId>{2});
}

TEST(StaticPacker, WorkloadLimitIsFirstFitSkippingRequestsThatDoNotFit) {
  // Identical configs have identical workload_of(); the packer reads the `workload` field, so the
  // rule is tested with workloads set by hand. Limit 6: 1 (2) -> 2; 2 (3) -> 5; 3 (2) would make
  // 7: skipped, stays; 4 (1) -> 6: joins; 5 (1) would make 7: skipped, stays.
  const std::vector<std::pair<RequestId, int64_t>> id_and_workload{
      {1, 2}, {2, 3}, {3, 2}, {4, 1}, {5, 1}};
  std::deque<WaitingRequest> queue;
  for (const auto& [id, workload] : id_and_workload) {
    queue.push_back(WaitingRequest{id, greedy_config(), workload, 0.0});
  }
  const std::optional<Package> package = pack(queue, 6);
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->requests, (std::vector<RequestId>{1, 2, 4}));
  EXPECT_EQ(package->workload, 6);
  EXPECT_EQ(ids_of(queue), (std::vector<RequestId>{3, 5}));
}

TEST(StaticPacker, OversizeHeadGoesAloneInsteadOfWaitingForever) {
  std::deque<WaitingRequest> queue{waiting_with_n(1, 5), waiting_with_n(2, 5),
                                   waiting_with_n(3, 5)};
  const std::optional<Package> package = pack(queue, 4);
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->requests, std::vector<RequestId>{1});
  EXPECT_EQ(package->workload, 5);
  EXPECT_EQ(ids_of(queue), (std::vector<RequestId>{2, 3}));
}

TEST(StaticPacker, BeamsAreCountedAsSequences) {
  GenerationConfig beams;
  beams.num_beams = 4;
  beams.num_return_sequences = 2;
  EXPECT_EQ(workload_of(beams), 4);
  GenerationConfig samples;
  samples.num_return_sequences = 3;
  EXPECT_EQ(workload_of(samples), 3);
  EXPECT_EQ(workload_of(GenerationConfig{}), 1);

  std::deque<WaitingRequest> queue{waiting(1, beams), waiting(2, beams), waiting(3, beams)};
  const std::optional<Package> package = pack(queue, 10);
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->requests, (std::vector<RequestId>{1, 2}));
  EXPECT_EQ(package->workload, 8);
  EXPECT_EQ(ids_of(queue), std::vector<RequestId>{3});
}

TEST(StaticPacker, RequestsInAPackageAreInArrivalOrder) {
  std::deque<WaitingRequest> queue;
  const std::vector<RequestId> arrival_order{42, 7, 99, 3, 15};
  for (size_t i = 0; i < arrival_order.size(); ++i) {
    queue.push_back(waiting(arrival_order[i], greedy_config(), 0.5 * static_cast<double>(i)));
  }
  const std::optional<Package> package = pack(queue, 100);
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->requests, arrival_order);
  EXPECT_TRUE(queue.empty());
}

TEST(StaticPacker, ShouldPackNowFollowsTheIntervalRule) {
  // Nothing waiting: never.
  EXPECT_FALSE(should_pack_now(/*engine_idle=*/true, 10.0, 0.0, 1.0, /*queue_empty=*/true));
  EXPECT_FALSE(should_pack_now(false, 10.0, 0.0, 1.0, true));
  // Idle engine and work waiting: at once, before the interval is up.
  EXPECT_TRUE(should_pack_now(true, 0.1, 0.0, 1.0, false));
  // Busy engine: only when the interval is up (exactly at the tick counts).
  EXPECT_FALSE(should_pack_now(false, 0.5, 0.0, 1.0, false));
  EXPECT_TRUE(should_pack_now(false, 1.0, 0.0, 1.0, false));
  EXPECT_TRUE(should_pack_now(false, 3.0, 1.5, 1.0, false));
  EXPECT_FALSE(should_pack_now(false, 2.4, 1.5, 1.0, false));
}

}  // namespace
}  // namespace servelab
