// Lab 08 (the client load balancer). Part lab08-least-workload: choose_server() for the least
// outstanding and least workload policies. Part lab08-health: the down/up state machine.
//
// The "fake servers" are what the balancer knows of real ones: a load per server, and the
// outcome of each health probe or request, scripted.
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "client/balancer_policy.h"

namespace servelab {
namespace {

/// A fake fleet: servers with loads; send() puts a request's estimate on the chosen server and
/// finish() takes it off, as the balancer does.
struct FakeFleet {
  std::vector<ServerLoad> loads;
  std::vector<size_t> up;  // candidate indexes
  uint64_t turn = 0;

  size_t send(BalancePolicy policy, const RequestEstimate& estimate) {
    const size_t chosen = choose_server(policy, loads, up, turn++);
    loads[chosen].outstanding += 1;
    loads[chosen].workload += estimate.workload();
    return chosen;
  }
  void finish(size_t server, const RequestEstimate& estimate) {
    loads[server].outstanding -= 1;
    loads[server].workload -= estimate.workload();
  }
};

RequestEstimate request_of(int64_t prompt_tokens, int64_t new_tokens, int64_t sequences = 1) {
  RequestEstimate estimate;
  estimate.prompt_tokens = prompt_tokens;
  estimate.max_new_tokens = new_tokens;
  estimate.sequences = sequences;
  return estimate;
}

// ---- lab08-least-workload -----------------------------------------------------------------------

TEST(Lab08LeastWorkload, APickOnIdleServersGoesToEachInTurn) {
  FakeFleet fleet{std::vector<ServerLoad>(3), {0, 1, 2}};
  std::vector<size_t> chosen;
  for (int i = 0; i < 3; ++i) {
    const size_t server = fleet.send(BalancePolicy::kLeastWorkload, request_of(10, 10));
    chosen.push_back(server);
    fleet.finish(server, request_of(10, 10));  // answered before the next one arrives
  }
  EXPECT_EQ(chosen, (std::vector<size_t>{0, 1, 2}));
}

TEST(Lab08LeastWorkload, OneLongRequestWeighsMoreThanSeveralShortOnes) {
  FakeFleet fleet{std::vector<ServerLoad>(2), {0, 1}};
  const size_t long_server = fleet.send(BalancePolicy::kLeastWorkload, request_of(1000, 2000));
  // Five short requests all go to the other server: 5 x 60 < 3000.
  for (int i = 0; i < 5; ++i)
    EXPECT_NE(fleet.send(BalancePolicy::kLeastWorkload, request_of(20, 40)), long_server) << i;
  // Least outstanding would have sent some of them to the long request's server.
  FakeFleet counting{std::vector<ServerLoad>(2), {0, 1}};
  const size_t busy = counting.send(BalancePolicy::kLeastOutstanding, request_of(1000, 2000));
  int to_busy = 0;
  for (int i = 0; i < 5; ++i)
    to_busy += counting.send(BalancePolicy::kLeastOutstanding, request_of(20, 40)) == busy;
  EXPECT_GE(to_busy, 2);
}

TEST(Lab08LeastWorkload, SamplesAndBeamsMultiplyTheNewTokens) {
  FakeFleet fleet{std::vector<ServerLoad>(2), {0, 1}};
  const size_t beams = fleet.send(BalancePolicy::kLeastWorkload, request_of(10, 100, 8));
  const size_t single = fleet.send(BalancePolicy::kLeastWorkload, request_of(10, 500, 1));
  EXPECT_NE(beams, single);
  EXPECT_EQ(fleet.send(BalancePolicy::kLeastWorkload, request_of(10, 10)), single)
      << "510 in flight there against 810";
}

TEST(Lab08LeastWorkload, OnlyCandidatesArePickedAndTiesAreShared) {
  std::vector<ServerLoad> loads = {{0, 0}, {0, 0}, {0, 0}, {9, 9000}};
  std::map<size_t, int> count;
  for (uint64_t turn = 0; turn < 30; ++turn) {
    const size_t chosen = choose_server(BalancePolicy::kLeastWorkload, loads, {1, 2, 3}, turn);
    EXPECT_NE(chosen, 0u) << "server 0 is down: not a candidate";
    count[chosen] += 1;
  }
  EXPECT_EQ(count[3], 0);
  EXPECT_GT(count[1], 5);
  EXPECT_GT(count[2], 5);
}

TEST(Lab08LeastWorkload, LeastOutstandingCountsRequestsNotTheirSize) {
  std::vector<ServerLoad> loads = {{2, 20}, {1, 5000}};
  EXPECT_EQ(choose_server(BalancePolicy::kLeastOutstanding, loads, {0, 1}, 0), 1u);
  EXPECT_EQ(choose_server(BalancePolicy::kLeastWorkload, loads, {0, 1}, 0), 0u);
}

// ---- lab08-health -------------------------------------------------------------------------------

TEST(Lab08Health, AServerIsDownUntilItsFirstGoodProbes) {
  ServerHealth health(HealthRules{3, 2});
  EXPECT_FALSE(health.up());
  health.probe_succeeded();
  EXPECT_FALSE(health.up());
  health.probe_succeeded();
  EXPECT_TRUE(health.up());
}

TEST(Lab08Health, KFailedProbesInARowMarkItDown) {
  ServerHealth health(HealthRules{3, 1});
  health.probe_succeeded();
  for (int round = 0; round < 3; ++round) {
    health.probe_failed();
    health.probe_failed();
    EXPECT_TRUE(health.up()) << "two failures are not three";
    health.probe_succeeded();  // the count starts again
  }
  health.probe_failed();
  health.probe_failed();
  health.probe_failed();
  EXPECT_FALSE(health.up());
  EXPECT_EQ(health.consecutive_failures(), 3);
}

TEST(Lab08Health, ARequestThatCannotConnectMarksItDownAtOnceAndAProbeBringsItBack) {
  ServerHealth health(HealthRules{3, 2});
  health.probe_succeeded();
  health.probe_succeeded();
  health.request_failed();
  EXPECT_FALSE(health.up());
  health.probe_succeeded();
  EXPECT_FALSE(health.up()) << "two good probes in a row are needed again";
  health.probe_succeeded();
  EXPECT_TRUE(health.up());
}

TEST(Lab08Health, ADownServerStaysDownThroughFailuresAndNeedsConsecutiveSuccesses) {
  ServerHealth health(HealthRules{1, 3});
  for (int i = 0; i < 3; ++i) health.probe_succeeded();
  health.probe_failed();
  EXPECT_FALSE(health.up());
  health.probe_succeeded();
  health.probe_succeeded();
  health.probe_failed();
  health.probe_succeeded();
  health.probe_succeeded();
  EXPECT_FALSE(health.up());
  health.probe_succeeded();
  EXPECT_TRUE(health.up());
}

}  // namespace
}  // namespace servelab
