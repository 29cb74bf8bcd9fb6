// The continuous-batching scheduler (see continuous_batcher.h).
#include "scheduler/continuous_batcher.h"

#include <algorithm>
#include <utility>

#include "common/error.h"

namespace servelab {

const char* to_string(PreemptionMode mode) {
  return mode == PreemptionMode::kSwap ? "swap" : "recompute";
}

PreemptionMode parse_preemption_mode(const std::string& name) {
  if (name == "swap") return PreemptionMode::kSwap;
  if (name == "recompute") return PreemptionMode::kRecompute;
  fail("preemption_mode must be swap or recompute, got '", name, "'");
}

ContinuousScheduler::ContinuousScheduler(ContinuousSchedulerConfig config)
    : config_(std::move(config)), blocks_(config_.blocks) {
  if (config_.batch_max_tokens < 1)
    fail("batch_max_tokens must be at least 1, got ", config_.batch_max_tokens);
  if (config_.batch_max_beams < 1)
    fail("batch_max_beams must be at least 1, got ", config_.batch_max_beams);
}

std::string ContinuousScheduler::check(const ScheduledRequestSpec& request) const {
  const int64_t prompt = static_cast<int64_t>(request.prompt.size());
  if (prompt == 0) return "the prompt is empty (no tokens)";
  if (request.max_sequences < 1) return "a request needs at least one sequence";
  if (request.max_total_tokens <= prompt)
    return str_cat("the request asks for no new tokens (max total ", request.max_total_tokens,
                   " for a prompt of ", prompt, ")");
  if (prompt > config_.batch_max_tokens)
    return str_cat("the prompt has ", prompt, " tokens, more than this server computes in one step",
                   " (batch_max_tokens = ", config_.batch_max_tokens, ")");
  if (request.max_sequences > config_.batch_max_beams)
    return str_cat("the request runs ", request.max_sequences,
                   " sequences at once (n or num_beams), more than this server runs in a batch",
                   " (batch_max_beams = ", config_.batch_max_beams, ")");
  if (blocks_.can_allocate(request.prompt, request.max_total_tokens, request.max_sequences) ==
      AllocationStatus::kNever)
    return str_cat("the request needs more KV cache than the server has: ", request.max_sequences,
                   " sequence(s) of up to ", request.max_total_tokens, " tokens, ",
                   blocks_.config().num_gpu_blocks, " blocks of ", blocks_.block_size(),
                   " tokens in all");
  return "";
}

void ContinuousScheduler::add(ScheduledRequestSpec spec) {
  if (requests_.count(spec.id) != 0) fail("scheduler: request ", spec.id, " is already queued");
  const std::string refusal = check(spec);
  if (!refusal.empty()) fail("scheduler: request ", spec.id, ": ", refusal);
  Request request;
  request.sequences.push_back(Sequence{next_sequence_++, spec.prompt, 0});
  owner_[request.sequences.back().id] = spec.id;
  const RequestId id = spec.id;
  request.spec = std::move(spec);
  requests_.emplace(id, std::move(request));
  waiting_.push_back(id);
}

ContinuousScheduler::Request& ContinuousScheduler::request_state(RequestId request,
                                                                 const char* operation) {
  auto found = requests_.find(request);
  if (found == requests_.end()) fail("scheduler: ", operation, ": unknown request ", request);
  return found->second;
}

ContinuousScheduler::Sequence& ContinuousScheduler::sequence_state(SequenceId sequence,
                                                                   const char* operation) {
  return const_cast<Sequence&>(std::as_const(*this).sequence_state(sequence, operation));
}

const ContinuousScheduler::Sequence& ContinuousScheduler::sequence_state(
    SequenceId sequence, const char* operation) const {
  auto owner = owner_.find(sequence);
  if (owner == owner_.end()) fail("scheduler: ", operation, ": unknown sequence ", sequence);
  const Request& request = requests_.at(owner->second);
  for (const Sequence& state : request.sequences)
    if (state.id == sequence) return state;
  fail("scheduler: ", operation, ": sequence ", sequence, " is not in request ", owner->second);
}

int64_t ContinuousScheduler::num_running_sequences() const {
  int64_t count = 0;
  for (RequestId id : running_) {
    const Request& request = requests_.at(id);
    // A request that has not forked yet holds room for all the sequences it will run.
    count += std::max<int64_t>(static_cast<int64_t>(request.sequences.size()),
                               request.sequences.size() == 1 ? request.spec.max_sequences : 0);
  }
  return count;
}

void ContinuousScheduler::preempt(RequestId id, SchedulerStep& step) {
  Request& request = request_state(id, "preempt");
  const bool single = request.sequences.size() == 1;
  const bool swap = config_.preemption_mode == PreemptionMode::kSwap || !single;
  if (swap && blocks_.can_swap_out(id)) {
    std::vector<BlockMove> moves = blocks_.swap_out(id);
    step.plan.swap_out.insert(step.plan.swap_out.end(), moves.begin(), moves.end());
    step.swapped_out.push_back(id);
    swapped_.push_back(id);
    stats_.swap_preemptions += 1;
    return;
  }
  if (!single) {
    // Recompute would need every sample's or beam's tokens prefilled again as separate
    // sequences; swap space is what keeps such requests alive. Without room, this request ends
    // (its blocks freed) with a message that says what to change, and the others go on.
    step.failed.emplace_back(
        id, str_cat("the request runs ", request.sequences.size(),
                    " sequences (n or num_beams) and had to be preempted, but the CPU swap space "
                    "is full; retry, or give the server more swap space (--num-cpu-blocks)"));
    stats_.failed += 1;
    finish(id);
    return;
  }
  blocks_.preempt_by_recompute(id);
  request.allocated = false;
  request.sequences.front().num_computed = 0;
  step.recomputed.push_back(id);
  waiting_.push_front(id);
  stats_.recompute_preemptions += 1;
}

void ContinuousScheduler::schedule_decode(Request& request, SchedulerStep& step) {
  for (Sequence& sequence : request.sequences) {
    AppendResult append = blocks_.append_slot(sequence.id, sequence.tokens.back());
    if (append.copy) step.plan.copies.push_back(*append.copy);
    step.sequences.push_back(
        {request.spec.id, sequence.id, {sequence.tokens.back()}, sequence.num_computed, false});
    step.num_decode_tokens += 1;
  }
}

SchedulerStep ContinuousScheduler::schedule() {
  SchedulerStep step;
  bool preempted = false;

  // 1. Every running sequence needs the slot for its next token. When the GPU pool is short, the
  //    most recently admitted request gives its blocks up, down to the one asking itself.
  std::deque<RequestId> queue(running_.begin(), running_.end());
  running_.clear();
  while (!queue.empty()) {
    const RequestId id = queue.front();
    queue.pop_front();
    bool self_preempted = false;
    // BEGIN LAB(lab07-preempt)
    while (!blocks_.can_append_slots(id)) {
      preempted = true;
      if (!queue.empty()) {
        preempt(queue.back(), step);
        queue.pop_back();
      } else {
        preempt(id, step);
        self_preempted = true;
        break;
      }
    }
    // END LAB
    if (self_preempted) continue;
    running_.push_back(id);
    schedule_decode(requests_.at(id), step);
  }

  // 2. Swapped requests come back first come, first served, unless this step preempted (its
  //    swap-outs must all come before any swap-in, and a request just swapped out should not
  //    come straight back).
  while (!preempted && !swapped_.empty()) {
    const RequestId id = swapped_.front();
    Request& request = requests_.at(id);
    const int64_t sequences = static_cast<int64_t>(request.sequences.size());
    if (num_running_sequences() + sequences > config_.batch_max_beams) break;
    if (!blocks_.can_swap_in(id)) break;
    swapped_.pop_front();
    std::vector<BlockMove> moves = blocks_.swap_in(id);
    step.plan.swap_in.insert(step.plan.swap_in.end(), moves.begin(), moves.end());
    step.swapped_in.push_back(id);
    running_.push_back(id);
    schedule_decode(request, step);
  }

  // 3. Waiting requests (new ones, and recompute-preempted ones at the front) in arrival order,
  //    while nothing is swapped out and the step's tokens, sequences and blocks allow.
  int64_t step_tokens = step.num_decode_tokens;
  int64_t running_sequences = num_running_sequences();
  while (!preempted && swapped_.empty() && !waiting_.empty()) {
    const RequestId id = waiting_.front();
    Request& request = requests_.at(id);
    Sequence& sequence = request.sequences.front();
    const int64_t length = static_cast<int64_t>(sequence.tokens.size());
    int64_t cached = 0;  // leading tokens found in the prefix cache
    // BEGIN LAB(lab07-admit)
    // The token budget limits what a step adds; its first prompt always fits (a recomputed
    // request may be longer than batch_max_tokens, and must still be able to run again).
    if (step.num_prefill_tokens > 0 && step_tokens + length > config_.batch_max_tokens) break;
    if (running_sequences + request.spec.max_sequences > config_.batch_max_beams) break;
    const AllocationStatus status = blocks_.can_allocate(
        sequence.tokens, request.spec.max_total_tokens, request.spec.max_sequences);
    if (status == AllocationStatus::kLater) break;
    waiting_.pop_front();
    if (status == AllocationStatus::kNever) {
      step.rejected.emplace_back(id, check(request.spec));
      stats_.rejected += 1;
      finish(id);
      continue;
    }
    cached = blocks_.allocate(id, sequence.id, sequence.tokens);
    // END LAB
    request.allocated = true;
    if (length > static_cast<int64_t>(request.spec.prompt.size()))
      stats_.recomputed_tokens += length;  // a recompute-preempted request running again
    else
      stats_.admitted += 1;
    sequence.num_computed = cached;
    step.sequences.push_back(
        {id, sequence.id,
         std::vector<int32_t>(sequence.tokens.begin() + cached, sequence.tokens.end()), cached,
         true});
    step.admitted.push_back(id);
    step.num_prefill_tokens += length - cached;
    step_tokens += length;
    running_sequences += request.spec.max_sequences;
    running_.push_back(id);
  }
  if (!step.empty()) stats_.steps += 1;
  return step;
}

void ContinuousScheduler::complete_step(const SchedulerStep& step) {
  for (const ScheduledSequence& scheduled : step.sequences) {
    auto owner = owner_.find(scheduled.sequence);
    if (owner == owner_.end()) continue;  // freed since (an abort during the step)
    Sequence& sequence = sequence_state(scheduled.sequence, "complete_step");
    sequence.num_computed = static_cast<int64_t>(sequence.tokens.size());
    blocks_.mark_computed(scheduled.sequence);
  }
}

void ContinuousScheduler::append_token(SequenceId sequence, int32_t token) {
  Sequence& state = sequence_state(sequence, "append_token");
  if (state.num_computed != static_cast<int64_t>(state.tokens.size()))
    fail("scheduler: append_token: sequence ", sequence,
         " has tokens whose keys and values were never computed (call complete_step first, and "
         "append one token per step)");
  state.tokens.push_back(token);
}

SequenceId ContinuousScheduler::fork(SequenceId parent) {
  const RequestId id = owner_.count(parent) ? owner_.at(parent) : -1;
  Request& request = request_state(id, "fork");
  if (!request.allocated || blocks_.is_swapped(id))
    fail("scheduler: fork: sequence ", parent, " is not running");
  const Sequence copy = sequence_state(parent, "fork");
  const SequenceId child = next_sequence_++;
  blocks_.fork(parent, child);
  Sequence forked = copy;
  forked.id = child;
  request.sequences.push_back(std::move(forked));
  owner_[child] = id;
  return child;
}

void ContinuousScheduler::free_sequence(SequenceId sequence) {
  auto owner = owner_.find(sequence);
  if (owner == owner_.end()) fail("scheduler: free_sequence: unknown sequence ", sequence);
  Request& request = requests_.at(owner->second);
  if (request.sequences.size() == 1)
    fail("scheduler: free_sequence: sequence ", sequence,
         " is its request's last; finish the request instead");
  if (request.allocated) blocks_.free_sequence(sequence);
  request.sequences.erase(std::find_if(request.sequences.begin(), request.sequences.end(),
                                       [&](const Sequence& s) { return s.id == sequence; }));
  owner_.erase(owner);
}

void ContinuousScheduler::finish(RequestId id) {
  auto found = requests_.find(id);
  if (found == requests_.end()) return;
  if (blocks_.has_request(id)) blocks_.free_request(id);
  for (const Sequence& sequence : found->second.sequences) owner_.erase(sequence.id);
  requests_.erase(found);
  auto drop = [id](auto& queue) {
    queue.erase(std::remove(queue.begin(), queue.end(), id), queue.end());
  };
  drop(waiting_);
  drop(running_);
  drop(swapped_);
}

std::vector<SequenceId> ContinuousScheduler::sequences_of(RequestId id) const {
  auto found = requests_.find(id);
  if (found == requests_.end()) fail("scheduler: sequences_of: unknown request ", id);
  std::vector<SequenceId> ids;
  for (const Sequence& sequence : found->second.sequences) ids.push_back(sequence.id);
  return ids;
}

const std::vector<int32_t>& ContinuousScheduler::tokens(SequenceId sequence) const {
  return sequence_state(sequence, "tokens").tokens;
}

int64_t ContinuousScheduler::prompt_length(RequestId id) const {
  auto found = requests_.find(id);
  if (found == requests_.end()) fail("scheduler: prompt_length: unknown request ", id);
  return static_cast<int64_t>(found->second.spec.prompt.size());
}

}  // namespace servelab
