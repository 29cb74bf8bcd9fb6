// The load balancer's policies and health state machine (see balancer_policy.h).
#include "client/balancer_policy.h"

#include <algorithm>

#include "common/error.h"

namespace servelab {

const char* to_string(BalancePolicy policy) {
  switch (policy) {
    case BalancePolicy::kRoundRobin:
      return "round_robin";
    case BalancePolicy::kLeastOutstanding:
      return "least_outstanding";
    case BalancePolicy::kLeastWorkload:
      return "least_workload";
  }
  return "?";
}

BalancePolicy parse_balance_policy(const std::string& name) {
  if (name == "round_robin") return BalancePolicy::kRoundRobin;
  if (name == "least_outstanding") return BalancePolicy::kLeastOutstanding;
  if (name == "least_workload") return BalancePolicy::kLeastWorkload;
  fail("policy must be round_robin, least_outstanding or least_workload, got '", name, "'");
}

int64_t estimate_prompt_tokens(const std::string& prompt_text) {
  return std::max<int64_t>(1, static_cast<int64_t>(prompt_text.size()) / 4);
}

size_t choose_server(BalancePolicy policy, const std::vector<ServerLoad>& servers,
                     const std::vector<size_t>& candidates, uint64_t turn) {
  if (candidates.empty()) fail("choose_server: no candidate server");
  for (size_t index : candidates)
    if (index >= servers.size())
      fail("choose_server: candidate ", index, " is not one of the ", servers.size(), " servers");
  const size_t start = static_cast<size_t>(turn % candidates.size());
  if (policy == BalancePolicy::kRoundRobin) return candidates[start];
  size_t best = candidates[start];
  // BEGIN LAB(lab08-least-workload)
  // Search from this turn's candidate onwards, so that among equally loaded servers each gets its
  // turn; a strictly smaller load wins.
  auto load_of = [&](size_t index) {
    const ServerLoad& load = servers[index];
    return policy == BalancePolicy::kLeastWorkload ? load.workload : load.outstanding;
  };
  for (size_t step = 1; step < candidates.size(); ++step) {
    const size_t index = candidates[(start + step) % candidates.size()];
    if (load_of(index) < load_of(best)) best = index;
  }
  // END LAB
  return best;
}

void ServerHealth::probe_succeeded() {
  // BEGIN LAB(lab08-health)
  failures_ = 0;
  successes_ += 1;
  if (!up_ && successes_ >= rules_.successes_to_mark_up) up_ = true;
  // END LAB
}

void ServerHealth::probe_failed() {
  // BEGIN LAB(lab08-health)
  successes_ = 0;
  failures_ += 1;
  if (up_ && failures_ >= rules_.failures_to_mark_down) up_ = false;
  // END LAB
}

void ServerHealth::request_failed() {
  // BEGIN LAB(lab08-health)
  up_ = false;
  successes_ = 0;
  // END LAB
}

}  // namespace servelab
