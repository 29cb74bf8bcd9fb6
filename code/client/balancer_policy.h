// The load balancer's decisions, as pure functions of a few numbers: which server gets the next
// request (round-robin, least outstanding requests, least estimated workload), what a request is
// estimated to cost, and when a server is down or up again (health). No sockets, no threads, no
// clock: the balancer (balancer.h) feeds them what it observed, and the unit tests feed them
// scripts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace servelab {

enum class BalancePolicy {
  kRoundRobin,        ///< each server in turn
  kLeastOutstanding,  ///< the server with the fewest requests in flight
  kLeastWorkload,     ///< the server with the least estimated work in flight
};
const char* to_string(BalancePolicy policy);
/// "round_robin", "least_outstanding" or "least_workload"; throws servelab::Error otherwise.
BalancePolicy parse_balance_policy(const std::string& name);

/// What the balancer guesses a request will cost a server, without a tokenizer. The unit is a
/// token computed: every prompt token once (prefill) plus every new token of every sequence
/// (decode). A decode token costs a server far more time than a prefill token, but decode tokens
/// are batched with the other requests' and prompt tokens are not; one unit each keeps the
/// estimate simple and is what the docs' comparison measures.
struct RequestEstimate {
  int64_t prompt_tokens = 0;    ///< estimated from the prompt's length: bytes / 4, at least 1
  int64_t max_new_tokens = 16;  ///< the request's budget (max_tokens / max_new_tokens)
  int64_t sequences = 1;        ///< max(n, num_beams)
  int64_t workload() const { return prompt_tokens + max_new_tokens * sequences; }
};

/// The prompt-token estimate of a text: 4 bytes per token (English text with a Llama-style
/// tokenizer is 3.5 to 4.5 bytes per token), at least 1.
int64_t estimate_prompt_tokens(const std::string& prompt_text);

/// One server as the policy sees it.
struct ServerLoad {
  int64_t outstanding = 0;  ///< requests sent to it and not yet answered
  int64_t workload = 0;     ///< the sum of their RequestEstimate::workload()
};

/// The index (into `servers`) of the server that gets the next request, among `candidates` (the
/// indexes of the servers that are up and serve the request's model and pool; not empty).
/// `turn` is the balancer's counter of decisions: round-robin takes candidates[turn % size], and
/// the other two policies start their search there, so that ties go to each server in turn.
/// Throws servelab::Error when `candidates` is empty.
size_t choose_server(BalancePolicy policy, const std::vector<ServerLoad>& servers,
                     const std::vector<size_t>& candidates, uint64_t turn);

struct HealthRules {
  int failures_to_mark_down = 3;  ///< consecutive failed probes that mark an up server down
  int successes_to_mark_up = 1;   ///< consecutive good probes that bring a down server back
};

/// The down/up state machine of one server. A server starts down (unknown) and comes up after
/// `successes_to_mark_up` good probes. An up server goes down after `failures_to_mark_down` failed
/// probes in a row, or at once when a request to it fails to connect (the balancer has proof, and
/// should not send it more requests until a probe passes).
class ServerHealth {
 public:
  explicit ServerHealth(HealthRules rules = {}) : rules_(rules) {}
  bool up() const { return up_; }
  void probe_succeeded();
  void probe_failed();
  void request_failed();
  int consecutive_failures() const { return failures_; }

 private:
  HealthRules rules_;
  bool up_ = false;
  int failures_ = 0;   // consecutive failed probes
  int successes_ = 0;  // consecutive good probes
};

}  // namespace servelab
