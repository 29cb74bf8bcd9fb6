// Unit tests of the balancer's policies, request estimate and health state machine.
#include "client/balancer_policy.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "common/error.h"

namespace servelab {
namespace {

TEST(BalancerPolicy, RoundRobinTakesTheCandidatesInTurn) {
  const std::vector<ServerLoad> loads(4);
  const std::vector<size_t> candidates = {0, 2, 3};
  std::vector<size_t> chosen;
  for (uint64_t turn = 0; turn < 6; ++turn)
    chosen.push_back(choose_server(BalancePolicy::kRoundRobin, loads, candidates, turn));
  EXPECT_EQ(chosen, (std::vector<size_t>{0, 2, 3, 0, 2, 3}));
}

TEST(BalancerPolicy, LeastOutstandingPicksTheFewestRequestsAndSharesTies) {
  std::vector<ServerLoad> loads = {{3, 10}, {1, 900}, {1, 20}, {0, 5000}};
  EXPECT_EQ(choose_server(BalancePolicy::kLeastOutstanding, loads, {0, 1, 2, 3}, 0), 3u);
  // Without server 3, 1 and 2 tie: the search starts at the turn's candidate.
  std::map<size_t, int> count;
  for (uint64_t turn = 0; turn < 6; ++turn)
    count[choose_server(BalancePolicy::kLeastOutstanding, loads, {0, 1, 2}, turn)] += 1;
  EXPECT_EQ(count[0], 0);
  EXPECT_GT(count[1], 0);
  EXPECT_GT(count[2], 0);
}

TEST(BalancerPolicy, LeastWorkloadPicksTheLeastEstimatedWork) {
  std::vector<ServerLoad> loads = {{1, 4000}, {5, 60}, {2, 300}};
  EXPECT_EQ(choose_server(BalancePolicy::kLeastWorkload, loads, {0, 1, 2}, 0), 1u)
      << "five small requests weigh less than one long one";
  EXPECT_EQ(choose_server(BalancePolicy::kLeastOutstanding, loads, {0, 1, 2}, 0), 0u);
  EXPECT_EQ(choose_server(BalancePolicy::kLeastWorkload, loads, {0, 2}, 7), 2u);
  EXPECT_THROW(choose_server(BalancePolicy::kLeastWorkload, loads, {}, 0), Error);
  EXPECT_THROW(choose_server(BalancePolicy::kLeastWorkload, loads, {9}, 0), Error);
}

TEST(BalancerPolicy, TheEstimateCountsPromptBytesOverFourAndEveryNewToken) {
  EXPECT_EQ(estimate_prompt_tokens(""), 1);
  EXPECT_EQ(estimate_prompt_tokens(std::string(400, 'x')), 100);
  RequestEstimate estimate;
  estimate.prompt_tokens = 100;
  estimate.max_new_tokens = 50;
  estimate.sequences = 4;
  EXPECT_EQ(estimate.workload(), 300);
}

TEST(BalancerPolicy, PolicyNamesRoundTripAndUnknownOnesAreRefused) {
  for (BalancePolicy policy : {BalancePolicy::kRoundRobin, BalancePolicy::kLeastOutstanding,
                               BalancePolicy::kLeastWorkload})
    EXPECT_EQ(parse_balance_policy(to_string(policy)), policy);
  EXPECT_THROW(parse_balance_policy("random"), Error);
}

TEST(ServerHealthTest, StartsDownComesUpAfterGoodProbesAndGoesDownAfterKFailures) {
  ServerHealth health(HealthRules{3, 2});
  EXPECT_FALSE(health.up()) << "unknown until a probe passes";
  health.probe_succeeded();
  EXPECT_FALSE(health.up());
  health.probe_succeeded();
  EXPECT_TRUE(health.up());
  health.probe_failed();
  health.probe_failed();
  EXPECT_TRUE(health.up()) << "two failures of three";
  health.probe_succeeded();  // resets the count
  health.probe_failed();
  health.probe_failed();
  EXPECT_TRUE(health.up());
  health.probe_failed();
  EXPECT_FALSE(health.up());
  health.probe_succeeded();
  EXPECT_FALSE(health.up()) << "one good probe of two";
  health.probe_failed();
  health.probe_succeeded();
  EXPECT_FALSE(health.up()) << "the successes must be consecutive";
  health.probe_succeeded();
  EXPECT_TRUE(health.up());
}

TEST(ServerHealthTest, AFailedRequestMarksItDownAtOnce) {
  ServerHealth health(HealthRules{3, 1});
  health.probe_succeeded();
  ASSERT_TRUE(health.up());
  health.request_failed();
  EXPECT_FALSE(health.up());
  health.probe_succeeded();
  EXPECT_TRUE(health.up());
}

}  // namespace
}  // namespace servelab
