// The continuous-batching scheduler: iteration-level scheduling (Orca) over a paged KV cache. Each
// step it decides which sequences run (decodes of the running requests, swapped requests coming
// back, newly admitted prompts) and which requests give their blocks up when the GPU pool runs
// short (preemption by swap or by recompute), and returns the cache plan and the batch. Policy
// only: it drives the block manager's bookkeeping but never runs the model, never touches device
// memory, never samples and never talks HTTP (the engine, continuous_engine.h, does those).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "block_manager/block_manager.h"
#include "block_manager/cache_plan.h"

namespace servelab {

/// How a request that must give its GPU blocks up is preempted.
enum class PreemptionMode {
  kSwap,       ///< its blocks move to the CPU pool and come back later (recompute when it can't)
  kRecompute,  ///< its blocks are dropped; it runs again later from prompt + generated tokens
};
const char* to_string(PreemptionMode mode);
/// "swap" or "recompute"; throws servelab::Error naming the value otherwise.
PreemptionMode parse_preemption_mode(const std::string& name);

struct ContinuousSchedulerConfig {
  /// The most tokens one step computes: prompt tokens of the newly admitted requests plus one per
  /// running sequence. A prompt longer than this can never be scheduled (rejected at once).
  int64_t batch_max_tokens = 4096;
  /// The most sequences running at once (every sample and beam counts).
  int64_t batch_max_beams = 256;
  PreemptionMode preemption_mode = PreemptionMode::kSwap;
  BlockManagerConfig blocks;
};

/// A request as the scheduler sees it: tokens and sizes, no text or sampling settings.
struct ScheduledRequestSpec {
  RequestId id = 0;
  std::vector<int32_t> prompt;
  /// Prompt plus new tokens per sequence at most (the request's max_new_tokens, clamped to the
  /// model's context by the caller).
  int64_t max_total_tokens = 0;
  /// Sequences the request will run at once: n for parallel sampling, num_beams for beam search.
  /// It starts with one; the engine forks the others after the prompt's step.
  int64_t max_sequences = 1;
};

/// One sequence's part in a step.
struct ScheduledSequence {
  RequestId request = 0;
  SequenceId sequence = 0;
  std::vector<int32_t> tokens;  ///< the tokens whose keys and values this step computes
  int64_t num_cached = 0;       ///< positions already in the cache before `tokens`
  bool prefill = false;         ///< a prompt (or a recomputed sequence), not one decode token
};

/// What one step runs, and what the scheduler did to get there.
struct SchedulerStep {
  CachePlan plan;                            ///< for the cache engine, before the forward
  std::vector<ScheduledSequence> sequences;  ///< decodes (oldest request first), then prefills
  std::vector<RequestId> admitted;           ///< new requests whose prompt runs this step
  std::vector<RequestId> swapped_in, swapped_out, recomputed;
  /// Requests that can never run (NEVER): the caller answers each with the message (400).
  std::vector<std::pair<RequestId, std::string>> rejected;
  /// Requests of several sequences that had to be preempted with no swap space left: they are
  /// finished (blocks freed); the caller answers each with the message (503).
  std::vector<std::pair<RequestId, std::string>> failed;
  int64_t num_prefill_tokens = 0;
  int64_t num_decode_tokens = 0;
  bool empty() const { return sequences.empty(); }
};

/// Counters since construction (requests, not sequences).
struct ContinuousSchedulerStats {
  int64_t steps = 0;
  int64_t admitted = 0;
  int64_t swap_preemptions = 0;
  int64_t recompute_preemptions = 0;
  int64_t rejected = 0;
  int64_t failed = 0;             ///< multi-sequence requests dropped for lack of swap space
  int64_t recomputed_tokens = 0;  ///< prompt and generated tokens prefilled again after recompute
};

/// The continuous-batching scheduler: three queues, waiting (arrival order; recompute-preempted
/// requests go back to its front), running (admission order) and swapped (preemption order).
///
/// One call of schedule() is one iteration:
///  1. every running sequence gets the slot for its next token; when the GPU pool is short, the
///     most recently admitted running request is preempted (swap, or recompute when swap is off
///     or the CPU pool is full; a request of several sequences can only be swapped, and fails
///     when the CPU pool is full), down to the one asking itself;
///  2. when nothing was preempted, swapped requests come back first come, first served while
///     can_swap_in says so (room for one token per sequence above the watermark) and the running
///     sequences stay within batch_max_beams;
///  3. when nothing is swapped out, waiting requests are admitted in arrival order while the
///     step's tokens stay within batch_max_tokens, the sequences within batch_max_beams and the
///     block manager says OK; a request that can never fit (NEVER) is rejected, and the first one
///     that must wait (LATER) stops admission (no overtaking: FCFS).
/// The step then runs prefills and decodes together in one forward call (a mixed batch).
///
/// After the forward the engine reports back: complete_step(), then per sequence append_token()
/// for each sampled token, fork() for new samples or beams and free_sequence() for finished
/// ones, and finish() or abort() for requests that are done.
class ContinuousScheduler {
 public:
  explicit ContinuousScheduler(ContinuousSchedulerConfig config);

  const ContinuousSchedulerConfig& config() const { return config_; }

  /// Empty when the request could ever run here; otherwise why not (a message for the user):
  /// a prompt over batch_max_tokens, more sequences than batch_max_beams, or more blocks than
  /// the GPU pool has.
  std::string check(const ScheduledRequestSpec& request) const;
  /// Queues a request (at the back of waiting). Throws when the id is in use or check() fails.
  void add(ScheduledRequestSpec request);

  /// One iteration; see the class comment.
  SchedulerStep schedule();
  /// The step's forward ran: every scheduled sequence's tokens now have their keys and values.
  void complete_step(const SchedulerStep& step);

  /// `token` was sampled for `sequence`: the next step computes its keys and values.
  void append_token(SequenceId sequence, int32_t token);
  /// A new sequence of the same request, sharing every block and token of `parent` (copy-on-
  /// write); the parent must be running. @return its id.
  SequenceId fork(SequenceId parent);
  /// Drops one sequence (a finished sample, a pruned beam); its request goes on while it has
  /// others. Its blocks are freed at once.
  void free_sequence(SequenceId sequence);
  /// The request is done (all its sequences) or its client left: frees its blocks wherever they
  /// are and forgets it. Unknown ids are ignored (it may have been rejected).
  void finish(RequestId request);

  /// The running sequences of a request, in fork order (the first is the prompt's).
  std::vector<SequenceId> sequences_of(RequestId request) const;
  /// Prompt plus tokens appended so far.
  const std::vector<int32_t>& tokens(SequenceId sequence) const;
  int64_t prompt_length(RequestId request) const;
  const std::vector<int32_t>& block_table(SequenceId sequence) const {
    return blocks_.block_table(sequence);
  }
  bool has_request(RequestId request) const { return requests_.count(request) != 0; }

  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t num_swapped() const { return static_cast<int64_t>(swapped_.size()); }
  int64_t num_running_sequences() const;
  const BlockManager& block_manager() const { return blocks_; }
  const ContinuousSchedulerStats& stats() const { return stats_; }

 private:
  struct Sequence {
    SequenceId id = 0;
    std::vector<int32_t> tokens;  ///< prompt + generated
    int64_t num_computed = 0;     ///< leading tokens whose keys and values are in the cache
  };
  struct Request {
    ScheduledRequestSpec spec;
    std::vector<Sequence> sequences;
    bool allocated = false;  ///< holds blocks (running or swapped)
  };

  Request& request_state(RequestId request, const char* operation);
  Sequence& sequence_state(SequenceId sequence, const char* operation);
  const Sequence& sequence_state(SequenceId sequence, const char* operation) const;
  /// Gives `request`'s blocks up (swap or recompute) and records it in `step`.
  void preempt(RequestId request, SchedulerStep& step);
  /// The running sequence's slot for its last token, and its decode entry in `step`.
  void schedule_decode(Request& request, SchedulerStep& step);

  ContinuousSchedulerConfig config_;
  BlockManager blocks_;
  std::map<RequestId, Request> requests_;
  std::map<SequenceId, RequestId> owner_;  // every live sequence's request
  std::deque<RequestId> waiting_;          // arrival order
  std::vector<RequestId> running_;         // admission order, oldest first
  std::deque<RequestId> swapped_;          // preemption order
  SequenceId next_sequence_ = 1;
  ContinuousSchedulerStats stats_;
};

}  // namespace servelab
