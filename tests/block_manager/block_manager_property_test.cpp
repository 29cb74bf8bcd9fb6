// Randomized property test of the block manager: thousands of random operations (admission,
// growth, fork, mark_computed, release, swap, recompute, and whole scheduler steps that batch
// them into one plan) against a simple model of what each sequence holds. After every operation
// the pools' books must agree with the block tables, and - the strongest check - a fake KV cache
// that executes every plan like the cache engine must give back each live sequence's tokens
// exactly, through its block table. Some operations are made on purpose when their precondition
// fails: they must throw servelab::Error and change nothing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "block_manager/block_manager.h"
#include "common/error.h"
#include "fake_kv_cache.h"

namespace servelab {
namespace {

using ::servelab::testing::FakeKvCache;
using ::servelab::testing::FakePool;

struct PropertyCase {
  const char* name;
  int64_t block_size;
  int64_t num_gpu_blocks;
  int64_t num_cpu_blocks;
  double watermark;
  bool prefix_caching;
  uint32_t seed;
  int steps;
};

std::ostream& operator<<(std::ostream& out, const PropertyCase& c) {
  return out << c.name << " (seed " << c.seed << ", block size " << c.block_size << ", "
             << c.num_gpu_blocks << " GPU / " << c.num_cpu_blocks << " CPU blocks, watermark "
             << c.watermark << ", prefix caching " << (c.prefix_caching ? "on" : "off") << ")";
}

std::string describe(const std::vector<int32_t>& values) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < values.size(); ++i) out << (i ? " " : "") << values[i];
  return out.str() + "]";
}

// What the test believes a sequence holds: its tokens, and how many of them the fake "forward"
// has written into the cache so far (the rest wait for the next step).
struct ModelSequence {
  RequestId request = 0;
  std::vector<int32_t> tokens;
  int64_t num_written = 0;
};
struct ModelRequest {
  std::set<SequenceId> sequences;
  bool swapped = false;
};

// Everything an operation that throws must leave as it was.
struct Snapshot {
  std::map<SequenceId, std::vector<int32_t>> tables;
  std::map<SequenceId, int64_t> num_tokens;
  std::map<RequestId, bool> swapped;
  std::vector<int32_t> gpu_refs, cpu_refs;
  std::vector<int64_t> numbers;  // pool counts and every counter of the stats
  auto tied() const { return std::tie(tables, num_tokens, swapped, gpu_refs, cpu_refs, numbers); }
  bool operator==(const Snapshot& other) const { return tied() == other.tied(); }
};

class PropertyRun {
 public:
  explicit PropertyRun(const PropertyCase& c)
      : case_(c),
        manager_(make_config(c)),
        cache_(c.num_gpu_blocks, c.num_cpu_blocks, c.block_size),
        rng_(c.seed) {}

  void run() {
    for (step_ = 0; step_ < case_.steps; ++step_) {
      try {
        random_operation();
        if (!::testing::Test::HasFailure()) check_everything();
      } catch (const std::exception& error) {
        ADD_FAILURE() << "unexpected exception: " << error.what();
      }
      if (::testing::Test::HasFailure()) {
        ADD_FAILURE() << "failed at step " << step_ << " of " << case_ << "\nlast operations:\n"
                      << recent_operations();
        return;
      }
    }
    try {
      free_everything();
    } catch (const std::exception& error) {
      ADD_FAILURE() << "unexpected exception: " << error.what();
    }
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "failed while freeing everything, " << case_ << "\nlast operations:\n"
                    << recent_operations();
      return;
    }
    check_coverage();
  }

 private:
  // A random walk proves little if it never reaches the interesting states: each kind of event
  // must have happened often enough in every case.
  void check_coverage() {
    // clang-format off
    std::vector<std::string> required = {
        "allocate", "allocate against LATER", "append", "fork", "mark_computed", "free_sequence",
        "free_request", "swap_out", "swap_in", "preempt", "batched step plan", "error on purpose",
        "GPU pool full", "CPU pool too small"};
    // clang-format on
    // Only a block that holds several tokens can be shared while partly full.
    if (case_.block_size > 1) required.push_back("copy-on-write");
    // Past a LATER, allocate succeeds only by using the watermark's blocks.
    if (manager_.watermark_blocks() > 0) required.push_back("allocate into the watermark");
    if (case_.prefix_caching) {
      required.insert(required.end(), {"prefix hit", "swap_in reused a cached block"});
    }
    std::string summary;
    for (const auto& [event, count] : coverage_) {
      summary += " " + event + "=" + std::to_string(count);
    }
    std::cout << "[ coverage ] " << case_.name << ":" << summary << "\n";
    for (const std::string& event : required) {
      EXPECT_GE(coverage_[event], 10) << "\"" << event << "\" happened too rarely in " << case_;
    }
  }
  void covered(const std::string& event) { ++coverage_[event]; }

  static BlockManagerConfig make_config(const PropertyCase& c) {
    BlockManagerConfig config;
    config.block_size = c.block_size;
    config.num_gpu_blocks = c.num_gpu_blocks;
    config.num_cpu_blocks = c.num_cpu_blocks;
    config.watermark = c.watermark;
    config.enable_prefix_caching = c.prefix_caching;
    return config;
  }

  // ---- randomness and the model's views ------------------------------------------------------

  int64_t uniform(int64_t low, int64_t high) {  // inclusive
    return std::uniform_int_distribution<int64_t>(low, high)(rng_);
  }
  bool coin(double probability) { return std::bernoulli_distribution(probability)(rng_); }
  int32_t random_token() { return static_cast<int32_t>(uniform(0, 2)); }  // prefixes repeat
  template <typename T>
  T pick(const std::vector<T>& items) {
    return items[static_cast<size_t>(uniform(0, static_cast<int64_t>(items.size()) - 1))];
  }

  int64_t block_size() const { return case_.block_size; }
  int64_t max_prompt() const { return 4 * block_size() + 3; }
  int64_t max_sequence() const { return 6 * block_size() + 4; }

  bool has_pending(RequestId request) const {
    for (SequenceId sequence : requests_.at(request).sequences) {
      const ModelSequence& state = sequences_.at(sequence);
      if (state.num_written < static_cast<int64_t>(state.tokens.size())) return true;
    }
    return false;
  }
  // Requests on the GPU whose every token is written: what a scheduler could run or preempt.
  std::vector<RequestId> running_requests() const {
    std::vector<RequestId> result;
    for (const auto& [request, state] : requests_) {
      if (!state.swapped && !has_pending(request)) result.push_back(request);
    }
    return result;
  }
  std::vector<RequestId> requests_where(bool swapped) const {
    std::vector<RequestId> result;
    for (const auto& [request, state] : requests_) {
      if (state.swapped == swapped) result.push_back(request);
    }
    return result;
  }
  std::vector<RequestId> pending_requests() const {
    std::vector<RequestId> result;
    for (const auto& [request, state] : requests_) {
      if (has_pending(request)) result.push_back(request);
    }
    return result;
  }
  std::vector<SequenceId> all_sequences() const {
    std::vector<SequenceId> result;
    for (const auto& entry : sequences_) result.push_back(entry.first);
    return result;
  }
  std::set<int32_t> distinct_blocks(RequestId request) const {
    std::set<int32_t> blocks;
    for (SequenceId sequence : requests_.at(request).sequences) {
      for (int32_t block : manager_.block_table(sequence)) blocks.insert(block);
    }
    return blocks;
  }
  const BlockPool& pool(FakePool which) const {
    return which == FakePool::kGpu ? manager_.gpu_pool() : manager_.cpu_pool();
  }

  void log(const std::string& operation) {
    recent_.push_back("step " + std::to_string(step_) + ": " + operation);
    if (recent_.size() > 40) recent_.pop_front();
  }
  std::string recent_operations() const {
    std::string text;
    for (const std::string& line : recent_) text += "  " + line + "\n";
    return text;
  }

  Snapshot snapshot() const {
    Snapshot result;
    for (const auto& [sequence, state] : sequences_) {
      if (!manager_.has_sequence(sequence)) continue;
      result.tables[sequence] = manager_.block_table(sequence);
      result.num_tokens[sequence] = manager_.num_tokens(sequence);
    }
    for (const auto& entry : requests_) {
      if (manager_.has_request(entry.first)) {
        result.swapped[entry.first] = manager_.is_swapped(entry.first);
      }
    }
    for (FakePool which : {FakePool::kGpu, FakePool::kCpu}) {
      std::vector<int32_t>& refs = which == FakePool::kGpu ? result.gpu_refs : result.cpu_refs;
      for (int32_t block = 0; block < pool(which).num_blocks(); ++block) {
        refs.push_back(pool(which).ref_count(block));
      }
    }
    const BlockManagerStats s = manager_.stats();
    result.numbers = {s.gpu_blocks_free,
                      s.gpu_blocks_used,
                      s.gpu_blocks_cached,
                      s.cpu_blocks_free,
                      s.cpu_blocks_used,
                      s.swap_outs,
                      s.swap_ins,
                      s.blocks_swapped_out,
                      s.blocks_swapped_in,
                      s.copy_on_writes,
                      s.recompute_preemptions,
                      s.prefix_hits,
                      s.prefix_queries,
                      manager_.gpu_pool().num_cached_free()};
    return result;
  }

  // Runs `action`, which must throw servelab::Error (naming `must_name` when not empty) and leave
  // the manager exactly as it was.
  template <typename Action>
  void expect_error_and_no_change(const std::string& what, Action&& action,
                                  const std::string& must_name = "") {
    log("on purpose: " + what);
    covered("error on purpose");
    const Snapshot before = snapshot();
    try {
      action();
      ADD_FAILURE() << what << ": expected a servelab::Error, got none";
      return;
    } catch (const Error& error) {
      if (!must_name.empty()) {
        EXPECT_THAT(error.what(), ::testing::HasSubstr(must_name)) << what;
      }
    }
    EXPECT_TRUE(snapshot() == before) << what << " threw but changed the manager's state";
    EXPECT_NO_THROW(manager_.check_invariants()) << what;
  }

  // ---- operations ----------------------------------------------------------------------------

  void random_operation() {
    const int choice = static_cast<int>(uniform(0, 99));
    if (choice < 18) return admit(make_prompt(), nullptr);
    if (choice < 26) return run_pending_prefill();
    if (choice < 44) return append_to_request(nullptr, nullptr);
    if (choice < 49) return append_to_one_sequence();
    if (choice < 55) return fork();
    if (choice < 60) return mark_computed();
    if (choice < 64) return free_one_sequence();
    if (choice < 68) return free_one_request();
    if (choice < 74) return swap_out(nullptr);
    if (choice < 81) return swap_in(nullptr);
    if (choice < 84) return preempt_by_recompute();
    if (choice < 94) return scheduler_step();
    return call_that_must_fail();
  }

  std::vector<int32_t> make_prompt() {
    std::vector<int32_t> prompt;
    std::vector<const std::vector<int32_t>*> bases;  // past prompts, and what live sequences hold
    for (const std::vector<int32_t>& tokens : library_) bases.push_back(&tokens);
    for (const auto& entry : sequences_) bases.push_back(&entry.second.tokens);
    if (!bases.empty() && coin(0.6)) {
      const std::vector<int32_t>& base = *pick(bases);
      prompt.assign(base.begin(), base.begin() + uniform(1, static_cast<int64_t>(base.size())));
      const int64_t tail = uniform(0, 2 * block_size());
      for (int64_t i = 0; i < tail; ++i) prompt.push_back(random_token());
    } else {
      const int64_t length = uniform(1, max_prompt());
      for (int64_t i = 0; i < length; ++i) prompt.push_back(random_token());
    }
    if (static_cast<int64_t>(prompt.size()) > max_sequence()) prompt.resize(max_sequence());
    return prompt;
  }
  void remember(const std::vector<int32_t>& tokens) {
    if (library_.size() < 16) {
      library_.push_back(tokens);
    } else {
      library_[static_cast<size_t>(uniform(0, 15))] = tokens;
    }
  }

  // A new request with `prompt`, if admission lets it in (or, sometimes, on purpose when it says
  // LATER). With `plan` the prefill is left pending for the caller's step to write.
  void admit(const std::vector<int32_t>& prompt, CachePlan* plan) {
    const int64_t need = manager_.blocks_for(static_cast<int64_t>(prompt.size()));
    const int64_t total = case_.num_gpu_blocks;
    const int64_t watermark = manager_.watermark_blocks();
    const int64_t free_before = manager_.gpu_pool().num_free();
    const AllocationStatus status = manager_.can_allocate(prompt);
    if (!case_.prefix_caching) {
      const AllocationStatus expected = need > total - watermark         ? AllocationStatus::kNever
                                        : free_before - need < watermark ? AllocationStatus::kLater
                                                                         : AllocationStatus::kOk;
      ASSERT_EQ(status, expected) << "can_allocate of " << prompt.size() << " tokens (" << need
                                  << " blocks) with " << free_before << " free";
    } else if (status == AllocationStatus::kNever) {
      ASSERT_GT(need, total - watermark) << "NEVER for a prompt that fits an empty pool";
    }
    const RequestId request = next_request_++;
    const SequenceId sequence = next_sequence_++;
    if (status == AllocationStatus::kOk) {
      log("allocate request " + std::to_string(request) + " prompt " + describe(prompt));
      covered("allocate");
      const int64_t cached = manager_.allocate(request, sequence, prompt);
      after_allocate(request, sequence, prompt, cached, plan != nullptr);
      ASSERT_GE(manager_.gpu_pool().num_free(), watermark) << "admission ate into the watermark";
    } else if (status == AllocationStatus::kLater && plan == nullptr && coin(0.3)) {
      // Past admission's advice: it may still fit below the watermark, or must throw.
      log("allocate against LATER: request " + std::to_string(request) + " prompt " +
          describe(prompt));
      covered("allocate against LATER");
      const Snapshot before = snapshot();
      try {
        const int64_t cached = manager_.allocate(request, sequence, prompt);
        ASSERT_GT(free_before, 0) << "allocate succeeded with no free GPU block";
        covered("allocate into the watermark");
        after_allocate(request, sequence, prompt, cached, false);
      } catch (const Error&) {
        ASSERT_TRUE(snapshot() == before) << "a failed allocate changed the state";
        ASSERT_FALSE(manager_.has_sequence(sequence));
        ASSERT_FALSE(manager_.has_request(request));
      }
    }
    if (plan == nullptr && manager_.has_request(request) && coin(0.7)) {
      run_prefill(request);
    }
  }

  // `plan_pending`: the allocate is part of a scheduler step whose plan has not run yet.
  void after_allocate(RequestId request, SequenceId sequence, const std::vector<int32_t>& prompt,
                      int64_t cached, bool plan_pending) {
    const int64_t length = static_cast<int64_t>(prompt.size());
    const std::vector<int32_t>& table = manager_.block_table(sequence);
    ASSERT_EQ(static_cast<int64_t>(table.size()), manager_.blocks_for(length));
    ASSERT_EQ(cached % block_size(), 0) << "cached " << cached << " tokens, not whole blocks";
    ASSERT_GE(cached, 0);
    ASSERT_LT(cached, length) << "the whole prompt came from the cache";
    if (!case_.prefix_caching) {
      ASSERT_EQ(cached, 0);
    }
    // The blocks the prefill will write must be this sequence's alone.
    for (size_t i = static_cast<size_t>(cached / block_size()); i < table.size(); ++i) {
      ASSERT_EQ(manager_.gpu_pool().ref_count(table[i]), 1) << "block " << table[i];
    }
    requests_[request].sequences.insert(sequence);
    sequences_[sequence] = ModelSequence{request, prompt, cached};
    // What a hit promises: those tokens' keys and values are in the cache when the forward
    // starts. Within a scheduler step a hit may be a block the same step swaps in, so the check
    // waits until the step's plan has run (and happens before the step's own writes).
    if (plan_pending) {
      hits_to_check_.push_back(sequence);
    } else {
      check_hit(sequence);
    }
    expected_prefix_hits_ += cached / block_size();
    if (cached > 0) covered("prefix hit");
    remember(prompt);
  }

  // The prompt tokens below num_written, which no step has written for this sequence yet, must be
  // in the cache already: that is what the prefix hit promised.
  void check_hit(SequenceId sequence) {
    const ModelSequence& state = sequences_.at(sequence);
    ASSERT_EQ(cache_.read(FakePool::kGpu, manager_.block_table(sequence), state.num_written),
              std::vector<int32_t>(state.tokens.begin(), state.tokens.begin() + state.num_written))
        << "prefix hit of " << state.num_written << " tokens for sequence " << sequence
        << " prompt " << describe(state.tokens);
  }

  // The forward over a request's pending tokens, then (usually) mark_computed for each sequence.
  void run_prefill(RequestId request) {
    log("prefill request " + std::to_string(request));
    for (SequenceId sequence : requests_.at(request).sequences) {
      ModelSequence& state = sequences_.at(sequence);
      const std::vector<int32_t>& table = manager_.block_table(sequence);
      for (int64_t position = state.num_written;
           position < static_cast<int64_t>(state.tokens.size()); ++position) {
        cache_.write_token(table, position, state.tokens[static_cast<size_t>(position)]);
      }
      state.num_written = static_cast<int64_t>(state.tokens.size());
    }
    maybe_mark_computed(request);
  }
  void maybe_mark_computed(RequestId request) {
    for (SequenceId sequence : requests_.at(request).sequences) {
      if (coin(0.8)) manager_.mark_computed(sequence);
    }
  }

  void run_pending_prefill() {
    const std::vector<RequestId> pending = pending_requests();
    if (!pending.empty()) run_prefill(pick(pending));
  }

  // One token for `sequence`, checked against what the spec says append_slot must do. With
  // `plan`, the copy joins the plan and the write is deferred to `writes`; otherwise both happen
  // now.
  void append_one(SequenceId sequence, CachePlan* plan,
                  std::vector<std::pair<SequenceId, int64_t>>* writes) {
    ModelSequence& state = sequences_.at(sequence);
    const int64_t length = static_cast<int64_t>(state.tokens.size());
    const std::vector<int32_t> table_before = manager_.block_table(sequence);
    const int32_t last = table_before.back();
    const bool last_full = length % block_size() == 0;
    const bool shared_partial = !last_full && manager_.gpu_pool().ref_count(last) > 1;
    const int32_t token = random_token();
    log("append " + std::to_string(token) + " to sequence " + std::to_string(sequence));
    covered("append");

    const AppendResult result = manager_.append_slot(sequence, token);
    const std::vector<int32_t>& table = manager_.block_table(sequence);
    ASSERT_EQ(manager_.num_tokens(sequence), length + 1);
    ASSERT_EQ(static_cast<int64_t>(table.size()), manager_.blocks_for(length + 1));
    ASSERT_TRUE(std::equal(table_before.begin(), table_before.end() - 1, table.begin()))
        << "append changed an earlier block";
    const int32_t written_block = table.back();
    ASSERT_EQ(result.slot, written_block * block_size() + length % block_size());
    if (last_full) {
      ASSERT_FALSE(result.copy.has_value()) << "copy for a new block";
      ASSERT_EQ(manager_.gpu_pool().ref_count(written_block), 1);
    } else if (shared_partial) {
      ASSERT_TRUE(result.copy.has_value()) << "no copy-on-write of shared block " << last;
      ASSERT_EQ(*result.copy, (BlockCopy{last, written_block}));
      ASSERT_NE(written_block, last);
      ASSERT_EQ(manager_.gpu_pool().ref_count(written_block), 1);
      ++expected_copy_on_writes_;
      covered("copy-on-write");
    } else {
      ASSERT_FALSE(result.copy.has_value()) << "copy of a private block";
      ASSERT_EQ(written_block, last);
    }
    state.tokens.push_back(token);
    CachePlan copy_plan;
    if (result.copy) copy_plan.copies.push_back(*result.copy);
    if (plan != nullptr) {
      plan->append(copy_plan);
      writes->emplace_back(sequence, result.slot);
    } else {
      cache_.apply(copy_plan);
      cache_.write_gpu_slot(result.slot, token);
      state.num_written = length + 1;
    }
  }

  // Does append_slot need a block for this sequence's next token?
  bool needs_block(SequenceId sequence) const {
    const int64_t length = static_cast<int64_t>(sequences_.at(sequence).tokens.size());
    return length % block_size() == 0 ||
           manager_.gpu_pool().ref_count(manager_.block_table(sequence).back()) > 1;
  }
  bool at_length_limit(RequestId request) const {
    for (SequenceId sequence : requests_.at(request).sequences) {
      if (static_cast<int64_t>(sequences_.at(sequence).tokens.size()) >= max_sequence()) {
        return true;
      }
    }
    return false;
  }

  // A decode step of every sequence of a running request (the scheduler's append_slots).
  void append_to_request(CachePlan* plan, std::vector<std::pair<SequenceId, int64_t>>* writes,
                         RequestId request = -1) {
    if (request < 0) {
      const std::vector<RequestId> running = running_requests();
      if (running.empty()) return;
      request = pick(running);
    }
    if (at_length_limit(request)) return;
    const int64_t num_sequences = static_cast<int64_t>(requests_.at(request).sequences.size());
    const bool can = manager_.can_append_slots(request);
    if (num_sequences <= manager_.gpu_pool().num_free()) {
      ASSERT_TRUE(can) << "can_append_slots false with a free block for every sequence";
    }
    if (!can) return;
    for (SequenceId sequence : requests_.at(request).sequences) {
      append_one(sequence, plan, writes);
      if (::testing::Test::HasFailure()) return;
    }
    if (plan == nullptr) maybe_mark_computed(request);
  }

  // append_slot on one sequence, whatever can_append_slots says: it must throw exactly when the
  // sequence needs a block and none is free.
  void append_to_one_sequence() {
    const std::vector<RequestId> running = running_requests();
    if (running.empty()) return;
    const RequestId request = pick(running);
    if (at_length_limit(request)) return;
    const std::vector<SequenceId> sequences(requests_.at(request).sequences.begin(),
                                            requests_.at(request).sequences.end());
    const SequenceId sequence = pick(sequences);
    if (needs_block(sequence) && manager_.gpu_pool().num_free() == 0) {
      expect_error_and_no_change(
          "append_slot to sequence " + std::to_string(sequence) + " with no free block",
          [&] { manager_.append_slot(sequence, 1); });
      return;
    }
    append_one(sequence, nullptr, nullptr);
  }

  void fork() {
    const std::vector<RequestId> running = running_requests();
    if (running.empty()) return;
    const RequestId request = pick(running);
    if (requests_.at(request).sequences.size() >= 4) return;
    const std::vector<SequenceId> sequences(requests_.at(request).sequences.begin(),
                                            requests_.at(request).sequences.end());
    const SequenceId parent = pick(sequences);
    const SequenceId child = next_sequence_++;
    log("fork sequence " + std::to_string(parent) + " into " + std::to_string(child));
    covered("fork");
    manager_.fork(parent, child);
    ASSERT_EQ(manager_.block_table(child), manager_.block_table(parent));
    ASSERT_EQ(manager_.num_tokens(child), manager_.num_tokens(parent));
    ASSERT_EQ(manager_.request_of(child), request);
    requests_.at(request).sequences.insert(child);
    sequences_[child] = sequences_.at(parent);
  }

  void mark_computed() {
    const std::vector<RequestId> running = running_requests();
    if (running.empty()) return;
    const RequestId request = pick(running);
    const std::vector<SequenceId> sequences(requests_.at(request).sequences.begin(),
                                            requests_.at(request).sequences.end());
    const SequenceId sequence = pick(sequences);
    log("mark_computed sequence " + std::to_string(sequence));
    covered("mark_computed");
    manager_.mark_computed(sequence);
  }

  void forget_sequence(SequenceId sequence) {
    const RequestId request = sequences_.at(sequence).request;
    if (coin(0.3)) remember(sequences_.at(sequence).tokens);
    sequences_.erase(sequence);
    requests_.at(request).sequences.erase(sequence);
    ASSERT_FALSE(manager_.has_sequence(sequence));
    if (requests_.at(request).sequences.empty()) {
      requests_.erase(request);
      ASSERT_FALSE(manager_.has_request(request)) << "request lives on with no sequence";
    }
  }
  void forget_request(RequestId request) {
    const std::set<SequenceId> sequences = requests_.at(request).sequences;
    for (SequenceId sequence : sequences) {
      forget_sequence(sequence);
      if (::testing::Test::HasFailure()) return;
    }
    ASSERT_FALSE(manager_.has_request(request));
  }

  void free_one_sequence() {
    if (sequences_.empty()) return;
    const SequenceId sequence = pick(all_sequences());
    log("free_sequence " + std::to_string(sequence));
    covered("free_sequence");
    manager_.free_sequence(sequence);
    forget_sequence(sequence);
  }
  void free_one_request() {
    if (requests_.empty()) return;
    std::vector<RequestId> requests;
    for (const auto& entry : requests_) requests.push_back(entry.first);
    const RequestId request = pick(requests);
    log("free_request " + std::to_string(request));
    covered("free_request");
    manager_.free_request(request);
    forget_request(request);
  }

  // After a swap, `before` (each sequence's table in the pool it left) and the tables now agree
  // with `moves`: a moved block lands on its move's destination, every distinct block comes back
  // as one block (so sharing survives), and a block that was not moved maps onto a block no move
  // writes (an already cached copy).
  void check_block_mapping(const std::map<SequenceId, std::vector<int32_t>>& before,
                           const std::vector<BlockMove>& moves,
                           const std::set<int32_t>& source_blocks) {
    std::map<int32_t, int32_t> mapping;
    std::set<int32_t> destinations;
    for (const BlockMove& move : moves) {
      ASSERT_TRUE(source_blocks.count(move.source)) << "moved block " << move.source;
      ASSERT_TRUE(mapping.emplace(move.source, move.destination).second)
          << "block " << move.source << " moved twice";
      ASSERT_TRUE(destinations.insert(move.destination).second)
          << "two moves into block " << move.destination;
    }
    for (const auto& [sequence, old_table] : before) {
      const std::vector<int32_t>& new_table = manager_.block_table(sequence);
      ASSERT_EQ(new_table.size(), old_table.size()) << "sequence " << sequence;
      for (size_t i = 0; i < old_table.size(); ++i) {
        const auto [entry, inserted] = mapping.emplace(old_table[i], new_table[i]);
        ASSERT_EQ(entry->second, new_table[i]) << "block " << old_table[i] << " of sequence "
                                               << sequence << " came back as two different blocks";
        if (inserted) {
          ASSERT_TRUE(case_.prefix_caching) << "block " << old_table[i] << " was not moved";
          ASSERT_FALSE(destinations.count(new_table[i]))
              << "block " << new_table[i] << " is both reused and a move's destination";
        }
      }
    }
  }

  void swap_out(CachePlan* plan, RequestId request = -1) {
    if (request < 0) {
      const std::vector<RequestId> running = running_requests();
      if (running.empty()) return;
      request = pick(running);
    }
    const std::set<int32_t> gpu_blocks = distinct_blocks(request);
    const bool fits = static_cast<int64_t>(gpu_blocks.size()) <= manager_.cpu_pool().num_free();
    ASSERT_EQ(manager_.can_swap_out(request), fits)
        << gpu_blocks.size() << " distinct blocks, " << manager_.cpu_pool().num_free()
        << " CPU blocks free";
    if (!fits) {
      covered("CPU pool too small");
      if (plan == nullptr && coin(0.5)) {
        expect_error_and_no_change(
            "swap_out of request " + std::to_string(request) + " without CPU room",
            [&] { manager_.swap_out(request); });
      }
      return;
    }
    log("swap_out request " + std::to_string(request));
    covered("swap_out");
    std::map<SequenceId, std::vector<int32_t>> before;
    for (SequenceId sequence : requests_.at(request).sequences) {
      before[sequence] = manager_.block_table(sequence);
    }
    const std::vector<BlockMove> moves = manager_.swap_out(request);
    // One move per distinct block, except that with prefix caching a computed block whose
    // prefix the CPU pool still caches is shared instead of moved (the fake cache checks it).
    if (case_.prefix_caching) {
      ASSERT_LE(moves.size(), gpu_blocks.size());
    } else {
      ASSERT_EQ(moves.size(), gpu_blocks.size()) << "one move per distinct block";
    }
    if (moves.size() < gpu_blocks.size()) covered("swap_out reused a cached CPU block");
    check_block_mapping(before, moves, gpu_blocks);
    if (::testing::Test::HasFailure()) return;
    requests_.at(request).swapped = true;
    ++expected_swap_outs_;
    expected_blocks_swapped_out_ += static_cast<int64_t>(moves.size());
    CachePlan swap_plan{moves, {}, {}};
    if (plan != nullptr) {
      plan->append(swap_plan);
    } else {
      cache_.apply(swap_plan);
    }
  }

  void swap_in(CachePlan* plan, RequestId request = -1) {
    if (request < 0) {
      const std::vector<RequestId> swapped = requests_where(true);
      if (swapped.empty()) return;
      request = pick(swapped);
    }
    const std::set<int32_t> cpu_blocks = distinct_blocks(request);
    const int64_t num_sequences = static_cast<int64_t>(requests_.at(request).sequences.size());
    const int64_t free_before = manager_.gpu_pool().num_free();
    const bool can = manager_.can_swap_in(request);
    if (free_before >=
        static_cast<int64_t>(cpu_blocks.size()) + num_sequences + manager_.watermark_blocks()) {
      ASSERT_TRUE(can) << "can_swap_in false with room for every block and one token each";
    }
    if (!can) {
      if (plan != nullptr || !coin(0.5)) return;
      const bool must_fail =
          !case_.prefix_caching && free_before < static_cast<int64_t>(cpu_blocks.size());
      if (must_fail) {
        expect_error_and_no_change(
            "swap_in of request " + std::to_string(request) + " without GPU room",
            [&] { manager_.swap_in(request); }, std::to_string(request));
        return;
      }
      // Against can_swap_in's advice but perhaps with room: either outcome, done cleanly.
      log("swap_in against can_swap_in: request " + std::to_string(request));
      const Snapshot before = snapshot();
      try {
        do_swap_in(request, nullptr, /*checked_room=*/false);
      } catch (const Error&) {
        ASSERT_TRUE(snapshot() == before) << "a failed swap_in changed the state";
      }
      return;
    }
    log("swap_in request " + std::to_string(request));
    do_swap_in(request, plan, /*checked_room=*/true);
  }

  void do_swap_in(RequestId request, CachePlan* plan, bool checked_room) {
    std::map<SequenceId, std::vector<int32_t>> before;
    for (SequenceId sequence : requests_.at(request).sequences) {
      before[sequence] = manager_.block_table(sequence);
    }
    const std::set<int32_t> cpu_blocks = distinct_blocks(request);
    const std::vector<BlockMove> moves = manager_.swap_in(request);
    covered("swap_in");
    if (moves.size() < cpu_blocks.size()) covered("swap_in reused a cached block");
    if (!case_.prefix_caching) {
      ASSERT_EQ(moves.size(), cpu_blocks.size());
    }
    check_block_mapping(before, moves, cpu_blocks);
    if (::testing::Test::HasFailure()) return;
    requests_.at(request).swapped = false;
    ++expected_swap_ins_;
    expected_blocks_swapped_in_ += static_cast<int64_t>(moves.size());
    if (checked_room) {
      ASSERT_GE(manager_.gpu_pool().num_free(), manager_.watermark_blocks())
          << "swap_in allowed into the watermark";
    }
    CachePlan swap_plan{{}, moves, {}};
    if (plan != nullptr) {
      plan->append(swap_plan);
    } else {
      cache_.apply(swap_plan);
    }
  }

  void preempt_by_recompute() {
    std::vector<RequestId> on_gpu = requests_where(false);
    if (on_gpu.empty()) return;
    const RequestId request = pick(on_gpu);
    const std::vector<int32_t> history =
        sequences_.at(*requests_.at(request).sequences.begin()).tokens;
    log("preempt_by_recompute request " + std::to_string(request));
    manager_.preempt_by_recompute(request);
    covered("preempt");
    ++expected_recompute_preemptions_;
    forget_request(request);
    if (::testing::Test::HasFailure()) return;
    // The scheduler later runs it again from its prompt plus what it generated.
    if (coin(0.5) && static_cast<int64_t>(history.size()) <= max_sequence()) {
      admit(history, nullptr);
    }
  }

  // One scheduler step: some of {swap out one request, swap in another, decode two others, admit
  // a new one}, in random order (but swap-out before swap-in), with every plan merged into one
  // CachePlan that the fake cache runs once (swap-outs, swap-ins, copies), and only then the step's
  // writes.
  void scheduler_step() {
    log("scheduler step begins");
    CachePlan plan;
    std::vector<std::pair<SequenceId, int64_t>> writes;
    std::set<RequestId> used;
    std::vector<int> actions = {0, 1, 2, 2, 3};
    std::shuffle(actions.begin(), actions.end(), rng_);
    // Every swap-out before any swap-in: a swap-in frees its CPU blocks at once, and a later
    // swap-out of the same step could take one as its destination, which the plan (swap-outs
    // first) would overwrite before the swap-in reads it. A scheduler must keep this order.
    const auto swap_out_position = std::find(actions.begin(), actions.end(), 0);
    const auto swap_in_position = std::find(actions.begin(), actions.end(), 1);
    if (swap_in_position < swap_out_position) std::iter_swap(swap_in_position, swap_out_position);
    const RequestId first_new_request = next_request_;
    for (int action : actions) {
      if (::testing::Test::HasFailure()) return;
      if (action == 0 && coin(0.4)) {
        std::vector<RequestId> candidates;
        for (RequestId r : running_requests()) {
          if (!used.count(r)) candidates.push_back(r);
        }
        if (candidates.empty()) continue;
        const RequestId request = pick(candidates);
        used.insert(request);
        swap_out(&plan, request);
      } else if (action == 1 && coin(0.6)) {
        std::vector<RequestId> candidates;
        for (RequestId r : requests_where(true)) {
          if (!used.count(r)) candidates.push_back(r);
        }
        if (candidates.empty()) continue;
        const RequestId request = pick(candidates);
        used.insert(request);
        swap_in(&plan, request);
      } else if (action == 2) {
        std::vector<RequestId> candidates;
        for (RequestId r : running_requests()) {
          if (!used.count(r) && r < first_new_request) candidates.push_back(r);
        }
        if (candidates.empty()) continue;
        const RequestId request = pick(candidates);
        used.insert(request);
        append_to_request(&plan, &writes, request);
      } else if (action == 3 && coin(0.5)) {
        admit(make_prompt(), &plan);
      }
    }
    if (::testing::Test::HasFailure()) return;
    log("scheduler step runs its plan: " + std::to_string(plan.swap_out.size()) + " out, " +
        std::to_string(plan.swap_in.size()) + " in, " + std::to_string(plan.copies.size()) +
        " copies");
    if (!plan.empty()) covered("batched step plan");
    cache_.apply(plan);
    for (SequenceId sequence : hits_to_check_) {
      check_hit(sequence);
      if (::testing::Test::HasFailure()) return;
    }
    hits_to_check_.clear();
    for (const auto& [sequence, slot] : writes) {
      ModelSequence& state = sequences_.at(sequence);
      cache_.write_gpu_slot(slot, state.tokens[static_cast<size_t>(state.num_written)]);
      ++state.num_written;
    }
    for (RequestId request = first_new_request; request < next_request_; ++request) {
      if (requests_.count(request)) run_prefill(request);
    }
    for (RequestId request : used) {
      if (requests_.count(request) && !requests_.at(request).swapped) {
        maybe_mark_computed(request);
      }
    }
  }

  // A call made knowing it is wrong: it must throw, name the id, and change nothing.
  void call_that_must_fail() {
    const int64_t unknown = 1000000 + step_;
    switch (uniform(0, 6)) {
      case 0:
        return expect_error_and_no_change(
            "free_sequence of unknown " + std::to_string(unknown),
            [&] { manager_.free_sequence(unknown); }, std::to_string(unknown));
      case 1:
        return expect_error_and_no_change(
            "free_request of unknown " + std::to_string(unknown),
            [&] { manager_.free_request(unknown); }, std::to_string(unknown));
      case 2:
        return expect_error_and_no_change(
            "fork of unknown parent " + std::to_string(unknown),
            [&] { manager_.fork(unknown, unknown + 1); }, std::to_string(unknown));
      case 3: {
        if (sequences_.empty()) return;
        const SequenceId existing = pick(all_sequences());
        const std::vector<int32_t> prompt = {1};
        return expect_error_and_no_change(
            "allocate of existing sequence " + std::to_string(existing),
            [&] { manager_.allocate(unknown, existing, prompt); }, std::to_string(existing));
      }
      case 4: {
        const std::vector<RequestId> swapped = requests_where(true);
        if (swapped.empty()) return;
        const SequenceId sequence = *requests_.at(pick(swapped)).sequences.begin();
        return expect_error_and_no_change(
            "append_slot to swapped sequence " + std::to_string(sequence),
            [&] { manager_.append_slot(sequence, 1); }, std::to_string(sequence));
      }
      case 5: {
        const std::vector<RequestId> running = running_requests();
        if (running.empty()) return;
        const RequestId request = pick(running);
        return expect_error_and_no_change("swap_in of running request " + std::to_string(request),
                                          [&] { manager_.swap_in(request); });
      }
      default: {
        const std::vector<RequestId> swapped = requests_where(true);
        if (swapped.empty()) return;
        const RequestId request = pick(swapped);
        return expect_error_and_no_change("swap_out of swapped request " + std::to_string(request),
                                          [&] { manager_.swap_out(request); });
      }
    }
  }

  // ---- the checks after every operation ------------------------------------------------------

  void check_everything() {
    if (manager_.gpu_pool().num_free() == 0) covered("GPU pool full");
    check_pools();
    if (::testing::Test::HasFailure()) return;
    check_model_agrees();
    if (::testing::Test::HasFailure()) return;
    check_stats();
    if (::testing::Test::HasFailure()) return;
    ASSERT_NO_THROW(manager_.check_invariants());
    check_contents();
    if (::testing::Test::HasFailure()) return;
    poison_unreachable_blocks();
  }

  void check_pools() {
    for (FakePool which : {FakePool::kGpu, FakePool::kCpu}) {
      const BlockPool& blocks = pool(which);
      const int64_t total = which == FakePool::kGpu ? case_.num_gpu_blocks : case_.num_cpu_blocks;
      ASSERT_EQ(blocks.num_blocks(), total);
      ASSERT_EQ(blocks.num_free() + blocks.num_used(), total) << to_string(which);
      ASSERT_LE(blocks.num_cached_free(), blocks.num_free()) << to_string(which);
      std::vector<int32_t> expected_refs(static_cast<size_t>(total), 0);
      for (const auto& [sequence, state] : sequences_) {
        if (requests_.at(state.request).swapped != (which == FakePool::kCpu)) continue;
        for (int32_t block : manager_.block_table(sequence)) {
          ASSERT_GE(block, 0) << to_string(which) << " block in sequence " << sequence;
          ASSERT_LT(block, total) << to_string(which) << " block in sequence " << sequence;
          ++expected_refs[static_cast<size_t>(block)];
        }
      }
      int64_t referenced = 0;
      for (int32_t block = 0; block < total; ++block) {
        ASSERT_EQ(blocks.ref_count(block), expected_refs[static_cast<size_t>(block)])
            << to_string(which) << " block " << block << ": reference count vs block tables";
        if (expected_refs[static_cast<size_t>(block)] > 0) ++referenced;
      }
      // No block is both free and referenced: the free ones are exactly the unreferenced ones.
      ASSERT_EQ(blocks.num_used(), referenced) << to_string(which);
    }
    if (!case_.prefix_caching) {
      ASSERT_EQ(manager_.gpu_pool().num_cached_free(), 0);
    }
  }

  void check_model_agrees() {
    for (const auto& [sequence, state] : sequences_) {
      ASSERT_TRUE(manager_.has_sequence(sequence)) << "sequence " << sequence;
      ASSERT_EQ(manager_.request_of(sequence), state.request);
      ASSERT_EQ(manager_.num_tokens(sequence), static_cast<int64_t>(state.tokens.size()));
      ASSERT_EQ(static_cast<int64_t>(manager_.block_table(sequence).size()),
                manager_.blocks_for(static_cast<int64_t>(state.tokens.size())))
          << "sequence " << sequence;
    }
    for (const auto& [request, state] : requests_) {
      ASSERT_TRUE(manager_.has_request(request)) << "request " << request;
      ASSERT_EQ(manager_.is_swapped(request), state.swapped) << "request " << request;
      std::vector<SequenceId> sequences = manager_.sequences_of(request);
      std::sort(sequences.begin(), sequences.end());
      ASSERT_EQ(sequences, std::vector<SequenceId>(state.sequences.begin(), state.sequences.end()))
          << "sequences of request " << request;
    }
  }

  void check_stats() {
    const BlockManagerStats stats = manager_.stats();
    const BlockPool& gpu = manager_.gpu_pool();
    const BlockPool& cpu = manager_.cpu_pool();
    ASSERT_EQ(stats.gpu_blocks_total, case_.num_gpu_blocks);
    ASSERT_EQ(stats.gpu_blocks_free, gpu.num_free());
    ASSERT_EQ(stats.gpu_blocks_used, gpu.num_used());
    ASSERT_EQ(stats.gpu_blocks_cached, gpu.num_cached_free());
    ASSERT_EQ(stats.cpu_blocks_total, case_.num_cpu_blocks);
    ASSERT_EQ(stats.cpu_blocks_free, cpu.num_free());
    ASSERT_EQ(stats.cpu_blocks_used, cpu.num_used());
    ASSERT_DOUBLE_EQ(stats.gpu_usage, static_cast<double>(gpu.num_used()) /
                                          static_cast<double>(case_.num_gpu_blocks));
    ASSERT_EQ(stats.swap_outs, expected_swap_outs_);
    ASSERT_EQ(stats.swap_ins, expected_swap_ins_);
    ASSERT_EQ(stats.blocks_swapped_out, expected_blocks_swapped_out_);
    ASSERT_EQ(stats.blocks_swapped_in, expected_blocks_swapped_in_);
    ASSERT_EQ(stats.recompute_preemptions, expected_recompute_preemptions_);
    ASSERT_EQ(stats.copy_on_writes, expected_copy_on_writes_);
    ASSERT_EQ(stats.prefix_hits, expected_prefix_hits_);
    ASSERT_GE(stats.prefix_queries, stats.prefix_hits);
    if (!case_.prefix_caching) {
      ASSERT_EQ(stats.prefix_hits, 0);
    }
  }

  // Every live sequence's written tokens read back through its block table.
  void check_contents() {
    for (const auto& [sequence, state] : sequences_) {
      const FakePool which = requests_.at(state.request).swapped ? FakePool::kCpu : FakePool::kGpu;
      const std::vector<int32_t> expected(state.tokens.begin(),
                                          state.tokens.begin() + state.num_written);
      const std::vector<int32_t> actual =
          cache_.read(which, manager_.block_table(sequence), state.num_written);
      ASSERT_EQ(actual, expected) << "KV contents of sequence " << sequence << " (request "
                                  << state.request << ", " << to_string(which) << " table "
                                  << describe(manager_.block_table(sequence)) << ")";
    }
  }

  // A block that no table holds and no prefix cache entry can bring back may be overwritten by
  // anyone; poison it so that a later read of it without a write first shows up.
  void poison_unreachable_blocks() {
    for (FakePool which : {FakePool::kGpu, FakePool::kCpu}) {
      const BlockPool& blocks = pool(which);
      for (int32_t block = 0; block < blocks.num_blocks(); ++block) {
        const bool may_be_found =
            case_.prefix_caching && blocks.has_hash(block) && blocks.computed(block);
        if (blocks.ref_count(block) == 0 && !may_be_found) {
          cache_.poison_block(which, block);
        }
      }
    }
  }

  void free_everything() {
    step_ = case_.steps;
    while (!requests_.empty()) {
      std::vector<RequestId> requests;
      for (const auto& entry : requests_) requests.push_back(entry.first);
      const RequestId request = pick(requests);
      if (coin(0.5)) {
        log("free_request " + std::to_string(request));
        manager_.free_request(request);
        forget_request(request);
      } else {
        const SequenceId sequence = *requests_.at(request).sequences.begin();
        log("free_sequence " + std::to_string(sequence));
        manager_.free_sequence(sequence);
        forget_sequence(sequence);
      }
      if (::testing::Test::HasFailure()) return;
      check_everything();
      if (::testing::Test::HasFailure()) return;
    }
    for (FakePool which : {FakePool::kGpu, FakePool::kCpu}) {
      EXPECT_EQ(pool(which).num_free(), pool(which).num_blocks()) << to_string(which);
      EXPECT_EQ(pool(which).num_used(), 0) << to_string(which);
    }
    const BlockManagerStats stats = manager_.stats();
    EXPECT_EQ(stats.gpu_blocks_used, 0);
    EXPECT_EQ(stats.cpu_blocks_used, 0);
    EXPECT_NO_THROW(manager_.check_invariants());
  }

  PropertyCase case_;
  BlockManager manager_;
  FakeKvCache cache_;
  std::mt19937 rng_;
  int step_ = 0;
  std::map<RequestId, ModelRequest> requests_;
  std::map<SequenceId, ModelSequence> sequences_;
  std::vector<std::vector<int32_t>> library_;  // past prompts and histories: prefixes repeat
  std::deque<std::string> recent_;
  std::map<std::string, int64_t> coverage_;
  std::vector<SequenceId> hits_to_check_;  // admitted in this scheduler step, before its plan ran
                                           // // how often each kind of event happened
  RequestId next_request_ = 1;
  SequenceId next_sequence_ = 1;
  int64_t expected_swap_outs_ = 0, expected_swap_ins_ = 0;
  int64_t expected_blocks_swapped_out_ = 0, expected_blocks_swapped_in_ = 0;
  int64_t expected_recompute_preemptions_ = 0, expected_copy_on_writes_ = 0;
  int64_t expected_prefix_hits_ = 0;
};

// Lab 05 builds this file again as part of its grading tests, under its own suite name.
#ifndef SERVELAB_PROPERTY_SUITE
#define SERVELAB_PROPERTY_SUITE BlockManagerProperty
#endif

class SERVELAB_PROPERTY_SUITE : public ::testing::TestWithParam<PropertyCase> {};

TEST_P(SERVELAB_PROPERTY_SUITE, RandomOperationsKeepBooksAndKvContentsConsistent) {
  SCOPED_TRACE(::testing::Message() << GetParam());
  PropertyRun(GetParam()).run();
}

// 20,000 operations in all: small pools so that they run out often, every block size from one
// token up, prefix caching on and off, with and without a watermark.
INSTANTIATE_TEST_SUITE_P(
    SmallPools, SERVELAB_PROPERTY_SUITE,
    ::testing::Values(PropertyCase{"PrefixBlockSize1", 1, 24, 16, 0.0, true, 1001, 2500},
                      PropertyCase{"NoPrefixBlockSize1", 1, 20, 12, 0.1, false, 1002, 2500},
                      PropertyCase{"PrefixBlockSize2Watermark", 2, 20, 12, 0.1, true, 1003, 2500},
                      PropertyCase{"NoPrefixBlockSize2", 2, 16, 12, 0.0, false, 1004, 2500},
                      PropertyCase{"PrefixBlockSize4", 4, 12, 8, 0.0, true, 1005, 2500},
                      PropertyCase{"NoPrefixBlockSize4Watermark", 4, 20, 10, 0.1, false, 1006,
                                   2500},
                      PropertyCase{"PrefixBlockSize8", 8, 10, 6, 0.0, true, 1007, 2500},
                      PropertyCase{"PrefixBlockSize4TinyCpu", 4, 16, 3, 0.1, true, 1008, 2500}),
    [](const ::testing::TestParamInfo<PropertyCase>& info) { return info.param.name; });

}  // namespace
}  // namespace servelab
