// Lab 06, part lab06-pack: the tests that grade pack(), the static batcher's packing rule.
// Each test feeds pack() a queue and checks the package and what is left in the queue.
#include <gtest/gtest.h>

#include <deque>
#include <optional>
#include <vector>

#include "scheduler/static_packer.h"

namespace servelab {
namespace {

GenerationConfig config_with_temperature(double temperature) {
  GenerationConfig config;
  config.do_sample = true;
  config.temperature = temperature;
  return config;
}

WaitingRequest request(RequestId id, const GenerationConfig& config, int64_t workload = 1) {
  return WaitingRequest{id, config, workload, static_cast<double>(id)};
}

std::vector<RequestId> ids_left(const std::deque<WaitingRequest>& queue) {
  std::vector<RequestId> ids;
  for (const WaitingRequest& waiting : queue) ids.push_back(waiting.id);
  return ids;
}

TEST(Lab06Pack, EmptyQueueGivesNoPackage) {
  std::deque<WaitingRequest> queue;
  EXPECT_EQ(pack(queue, 4), std::nullopt);
  EXPECT_TRUE(queue.empty());
}

TEST(Lab06Pack, SingleRequestIsPackedWithItsConfig) {
  const GenerationConfig config = config_with_temperature(0.8);
  std::deque<WaitingRequest> queue{request(1, config, 2)};
  const std::optional<Package> package = pack(queue, 4);
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->requests, std::vector<RequestId>{1});
  EXPECT_EQ(package->workload, 2);
  EXPECT_EQ(package->config, config);
  EXPECT_TRUE(queue.empty());
}

TEST(Lab06Pack, OnlyRequestsWithTheHeadsConfigJoin) {
  const GenerationConfig hot = config_with_temperature(1.0);
  const GenerationConfig cold = config_with_temperature(0.2);
  std::deque<WaitingRequest> queue{request(1, cold), request(2, hot), request(3, cold),
                                   request(4, hot), request(5, cold)};
  const std::optional<Package> package = pack(queue, 10);
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->config, cold);
  EXPECT_EQ(package->requests, (std::vector<RequestId>{1, 3, 5}));
  EXPECT_EQ(package->workload, 3);
  EXPECT_EQ(ids_left(queue), (std::vector<RequestId>{2, 4}));
}

TEST(Lab06Pack, ConfigsDifferingInOneFieldAreNotMerged) {
  GenerationConfig base;
  GenerationConfig with_stop = base;
  with_stop.stop = {"\n"};
  GenerationConfig with_seed = base;
  with_seed.seed = 0;
  GenerationConfig longer = base;
  longer.max_new_tokens = 17;
  std::deque<WaitingRequest> queue{request(1, base), request(2, with_stop), request(3, with_seed),
                                   request(4, longer), request(5, base)};
  const std::optional<Package> package = pack(queue, 10);
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->requests, (std::vector<RequestId>{1, 5}));
  EXPECT_EQ(ids_left(queue), (std::vector<RequestId>{2, 3, 4}));
}

TEST(Lab06Pack, StopsAtTheWorkloadLimit) {
  const GenerationConfig config;
  std::deque<WaitingRequest> queue;
  for (RequestId id = 1; id <= 6; ++id) queue.push_back(request(id, config));
  const std::optional<Package> package = pack(queue, 4);
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->requests, (std::vector<RequestId>{1, 2, 3, 4}));
  EXPECT_EQ(package->workload, 4);
  EXPECT_EQ(ids_left(queue), (std::vector<RequestId>{5, 6}));
}

TEST(Lab06Pack, FirstFitSkipsARequestThatDoesNotFitButTakesLaterOnes) {
  const GenerationConfig config;
  // Limit 5: 1 (2) -> 2; 2 (2) -> 4; 3 (3) would make 7: stays; 4 (1) -> 5; 5 (1) would make 6.
  std::deque<WaitingRequest> queue{request(1, config, 2), request(2, config, 2),
                                   request(3, config, 3), request(4, config, 1),
                                   request(5, config, 1)};
  const std::optional<Package> package = pack(queue, 5);
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->requests, (std::vector<RequestId>{1, 2, 4}));
  EXPECT_EQ(package->workload, 5);
  EXPECT_EQ(ids_left(queue), (std::vector<RequestId>{3, 5}));
}

TEST(Lab06Pack, HeadAboveTheLimitIsPackedAlone) {
  const GenerationConfig config;
  std::deque<WaitingRequest> queue{request(1, config, 8), request(2, config, 1)};
  const std::optional<Package> package = pack(queue, 4);
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->requests, std::vector<RequestId>{1});
  EXPECT_EQ(package->workload, 8);
  EXPECT_EQ(ids_left(queue), std::vector<RequestId>{2});
}

TEST(Lab06Pack, BeamSearchRequestsCountTheirBeams) {
  GenerationConfig beams;
  beams.num_beams = 3;
  std::deque<WaitingRequest> queue;
  for (RequestId id = 1; id <= 3; ++id) queue.push_back(request(id, beams, workload_of(beams)));
  const std::optional<Package> package = pack(queue, 7);
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->requests, (std::vector<RequestId>{1, 2}));
  EXPECT_EQ(package->workload, 6);
  EXPECT_EQ(ids_left(queue), std::vector<RequestId>{3});
}

TEST(Lab06Pack, RepeatedPackingDrainsTheQueueInArrivalOrder) {
  const GenerationConfig a = config_with_temperature(0.5);
  const GenerationConfig b = config_with_temperature(0.9);
  std::deque<WaitingRequest> queue{request(10, a), request(11, b), request(12, a),
                                   request(13, b), request(14, a), request(15, b)};
  std::vector<std::vector<RequestId>> packages;
  while (std::optional<Package> package = pack(queue, 2)) packages.push_back(package->requests);
  const std::vector<std::vector<RequestId>> expected{{10, 12}, {11, 13}, {14}, {15}};
  EXPECT_EQ(packages, expected);
  EXPECT_TRUE(queue.empty());
}

}  // namespace
}  // namespace servelab
