// The continuous-batching engine thread (see continuous_engine.h).
#include "scheduler/continuous_engine.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "common/error.h"
#include "sampling/logits_processors.h"
#include "tokenizer/incremental_detokenizer.h"

namespace servelab {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

/// An admitted request: its choices and which live sequence feeds which choice.
struct ContinuousEngine::Active {
  int64_t id = 0;  // the scheduler's request id
  ServingRequest request;
  std::vector<std::unique_ptr<ChoiceOutput>> choices;
  std::map<SequenceId, int> choice_of;  // live sequences
  bool forked = false;                  // the n - 1 other samples exist (after the prompt's step)
  // Beam search (num_beams > 1) instead of choices: the running beams' sequences and generated
  // tokens, in the search's order.
  std::unique_ptr<BeamSearch> beams;
  std::vector<SequenceId> beam_sequences;
  std::vector<std::vector<int32_t>> beam_tokens;
};

ContinuousEngine::ContinuousEngine(LlamaModel& model, const Tokenizer& tokenizer,
                                   ContinuousEngineOptions options)
    : model_(model),
      tokenizer_(tokenizer),
      options_(std::move(options)),
      scheduler_(options_.scheduler),
      cache_(model.backend(), kv_cache_shape(model, options_.scheduler.blocks.block_size),
             options_.scheduler.blocks.num_gpu_blocks, options_.scheduler.blocks.num_cpu_blocks),
      runner_(model, cache_),
      seed_source_(std::random_device{}()) {
  if (options_.max_waiting < 0)
    fail("max_waiting must be >= 0 (0: unbounded), got ", options_.max_waiting);
  publish_gauges();
}

ContinuousEngine::~ContinuousEngine() {
  stop(std::chrono::milliseconds(0));
}

void ContinuousEngine::start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { engine_loop(); });
}

void ContinuousEngine::submit(ServingRequest request) {
  const GenerationConfig& config = request.config;
  const int64_t prompt_length = static_cast<int64_t>(request.prompt_tokens.size());
  const int64_t context = model_.config().max_position_embeddings;
  std::string refusal;
  if (prompt_length >= context) {
    refusal = prompt_too_long(context, prompt_length);
  } else if (config.num_beams > 1 && !config.is_greedy()) {
    refusal = "beam search with sampling (num_beams > 1 and do_sample) is not supported";
  } else if (config.num_beams > 1 && !config.stop.empty()) {
    refusal = "stop strings are not supported with beam search (num_beams > 1)";
  } else if (config.num_return_sequences < 1 || config.max_new_tokens < 1) {
    refusal = "num_return_sequences and max_new_tokens must be at least 1";
  }
  // (Whether it fits this server's batch and KV cache at all is checked by the engine thread when
  // it takes the request in: the scheduler belongs to that thread.)
  if (!refusal.empty()) {
    request.output->send(error_event(refusal, 400));
    return;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  if (stopping_) {
    lock.unlock();
    request.output->send(shutting_down_event());
    return;
  }
  if (options_.max_waiting > 0 &&
      static_cast<int64_t>(inbox_.size()) + gauges_.waiting >= options_.max_waiting) {
    lock.unlock();
    request.output->send(overloaded_event(options_.max_waiting));
    return;
  }
  inbox_.push_back(std::move(request));
  lock.unlock();
  work_ready_.notify_all();
}

void ContinuousEngine::stop(std::chrono::milliseconds grace) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!stopping_) {
      stopping_ = true;
      abort_deadline_ = Clock::now() + grace;
    }
    for (ServingRequest& request : inbox_) request.output->send(shutting_down_event());
    inbox_.clear();
  }
  work_ready_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

EngineGauges ContinuousEngine::gauges() const {
  std::lock_guard<std::mutex> lock(mutex_);
  EngineGauges gauges = gauges_;
  gauges.waiting += static_cast<int64_t>(inbox_.size());
  return gauges;
}

ContinuousEngineStats ContinuousEngine::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void ContinuousEngine::publish_gauges() {
  const BlockManagerStats blocks = scheduler_.block_manager().stats();
  EngineGauges gauges;
  gauges.running = scheduler_.num_running();
  gauges.waiting = scheduler_.num_waiting();
  gauges.swapped = scheduler_.num_swapped();
  gauges.kv_usage = blocks.gpu_usage;
  gauges.kv_blocks_total = blocks.gpu_blocks_total;
  gauges.kv_blocks_free = blocks.gpu_blocks_free;
  gauges.cpu_blocks_total = blocks.cpu_blocks_total;
  gauges.cpu_blocks_free = blocks.cpu_blocks_free;
  gauges.preemptions_swap = scheduler_.stats().swap_preemptions;
  gauges.preemptions_recompute = scheduler_.stats().recompute_preemptions;
  std::lock_guard<std::mutex> lock(mutex_);
  gauges_ = gauges;
  stats_.scheduler = scheduler_.stats();
}

void ContinuousEngine::intake_locked() {
  const int64_t context = model_.config().max_position_embeddings;
  for (ServingRequest& request : inbox_) {
    const int64_t id = next_id_++;
    const GenerationConfig& config = request.config;
    const int64_t prompt_length = static_cast<int64_t>(request.prompt_tokens.size());
    const int64_t budget = std::min(config.max_new_tokens, context - prompt_length);
    const uint64_t seed = config.seed ? *config.seed : seed_source_();
    auto active = std::make_unique<Active>();
    active->id = id;
    if (config.num_beams > 1) {
      BeamSearchConfig beam_config;
      beam_config.num_beams = config.num_beams;
      beam_config.num_return_sequences = config.num_return_sequences;
      beam_config.length_penalty = config.length_penalty;
      beam_config.early_stopping = config.early_stopping == "true"    ? EarlyStopping::kFirst
                                   : config.early_stopping == "never" ? EarlyStopping::kNever
                                                                      : EarlyStopping::kHeuristic;
      if (!config.ignore_eos) beam_config.eos_ids = tokenizer_.eos_ids();
      beam_config.max_new_tokens = budget;
      active->beams = std::make_unique<BeamSearch>(beam_config);
    }
    for (int64_t choice = 0; choice < (active->beams ? 0 : config.num_return_sequences); ++choice) {
      // seed + choice: the n samples differ, and repeat with the same seed.
      active->choices.push_back(std::make_unique<ChoiceOutput>(
          tokenizer_, request.prompt_tokens, config, static_cast<int>(choice), budget,
          seed + static_cast<uint64_t>(choice), request.output));
    }
    active->forked = config.num_return_sequences == 1 || active->beams != nullptr;
    ScheduledRequestSpec spec;
    spec.id = id;
    spec.prompt = request.prompt_tokens;
    spec.max_total_tokens = prompt_length + budget;
    spec.max_sequences = std::max(config.num_return_sequences, config.num_beams);
    // A request that can never run here (a prompt over batch_max_tokens, more sequences than
    // batch_max_beams or than the KV cache holds) is answered now, before it waits.
    const std::string refusal = scheduler_.check(spec);
    if (!refusal.empty()) {
      request.output->send(error_event(refusal, 400));
      continue;
    }
    active->request = std::move(request);
    scheduler_.add(std::move(spec));
    const SequenceId first = scheduler_.sequences_of(id).front();
    if (active->beams) {
      active->beam_sequences = {first};
      active->beam_tokens = {{}};
    } else {
      active->choice_of[first] = 0;
    }
    active_.emplace(id, std::move(active));
  }
  inbox_.clear();
}

void ContinuousEngine::release(int64_t request) {
  scheduler_.finish(request);
  active_.erase(request);
}

void ContinuousEngine::abort_all(const std::string& finish_reason) {
  for (auto& [id, active] : active_) {
    for (auto& choice : active->choices) choice->finish(finish_reason);
    if (active->beams) {
      // Beams stream nothing until the search ends: each answer is empty.
      for (int64_t index = 0; index < active->request.config.num_return_sequences; ++index) {
        OutputEvent event;
        event.kind = OutputEvent::Kind::kFinished;
        event.index = static_cast<int>(index);
        event.finish_reason = finish_reason;
        active->request.output->send(std::move(event));
      }
    }
    scheduler_.finish(id);
  }
  active_.clear();
}

void ContinuousEngine::engine_loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [&] { return stopping_ || !inbox_.empty() || !active_.empty(); });
      if (stopping_) {
        // Requests that never started (no blocks, nothing generated): 503. Running ones get the
        // grace period.
        for (auto it = active_.begin(); it != active_.end();) {
          const bool started =
              scheduler_.block_manager().has_request(it->first) ||
              std::any_of(it->second->choices.begin(), it->second->choices.end(),
                          [](const auto& choice) { return choice->generated() > 0; });
          if (!started) {
            it->second->request.output->send(shutting_down_event());
            scheduler_.finish(it->first);
            it = active_.erase(it);
          } else {
            ++it;
          }
        }
        if (active_.empty() || Clock::now() >= abort_deadline_) {
          lock.unlock();
          abort_all("abort");
          publish_gauges();
          return;
        }
      } else {
        intake_locked();
      }
    }
    // Clients that left: their requests go, wherever their blocks are.
    for (auto it = active_.begin(); it != active_.end();) {
      if (it->second->request.output->cancelled()) {
        scheduler_.finish(it->first);
        it = active_.erase(it);
      } else {
        ++it;
      }
    }
    try {
      run_step();
    } catch (const std::exception& error) {
      // A failure of the model, the cache engine or the scheduler: every request in flight is
      // told, and the engine goes on with an empty batch.
      for (auto& [id, active] : active_) {
        active->request.output->send(
            error_event(str_cat("generation failed: ", error.what()), 500));
        scheduler_.finish(id);
      }
      active_.clear();
    }
    publish_gauges();
  }
}

bool ContinuousEngine::run_step() {
  const auto schedule_start = Clock::now();
  SchedulerStep step = scheduler_.schedule();
  for (const auto& [id, message] : step.rejected) {
    auto found = active_.find(id);
    if (found == active_.end()) continue;
    found->second->request.output->send(error_event(message, 400));
    active_.erase(found);
  }
  for (const auto& [id, message] : step.failed) {
    auto found = active_.find(id);
    if (found == active_.end()) continue;
    found->second->request.output->send(error_event(message, 503));
    active_.erase(found);
  }
  if (step.empty()) {
    // With requests in flight a step always has something to run (running requests decode; with
    // none running the pool is free for the swapped or the oldest waiting one). If not, a size
    // check is wrong: fail the requests rather than spin.
    if (!active_.empty())
      fail("the scheduler scheduled nothing with ", scheduler_.num_waiting(), " waiting and ",
           scheduler_.num_swapped(), " swapped requests");
    return false;
  }
  std::vector<StepSequence> batch;
  batch.reserve(step.sequences.size());
  bool all_greedy = true;
  for (const ScheduledSequence& scheduled : step.sequences) {
    batch.push_back(
        {scheduled.tokens, scheduled.num_cached, &scheduler_.block_table(scheduled.sequence)});
    const Active& active = *active_.at(scheduled.request);
    if (active.beams) all_greedy = false;  // beam search needs every beam's log-probabilities
    for (const auto& choice : active.choices)
      if (!choice->done() && !choice->greedy()) all_greedy = false;
  }
  const double schedule_seconds = seconds_since(schedule_start);

  const auto forward_start = Clock::now();
  Tensor logits;
  std::vector<int32_t> greedy_tokens;
  if (all_greedy) {
    greedy_tokens = runner_.run_greedy(step.plan, batch);
  } else {
    logits = runner_.run(step.plan, batch);
  }
  scheduler_.complete_step(step);
  const double forward_seconds = seconds_since(forward_start);

  const auto sample_start = Clock::now();
  const int32_t vocab = static_cast<int32_t>(model_.config().vocab_size);
  std::map<int64_t, std::map<SequenceId, const float*>> beam_rows;  // beam requests' logits
  for (size_t row = 0; row < step.sequences.size(); ++row) {
    const ScheduledSequence& scheduled = step.sequences[row];
    auto found = active_.find(scheduled.request);
    if (found == active_.end()) continue;  // finished by an earlier row of this step
    const float* row_logits =
        all_greedy ? nullptr : logits.f32() + row * static_cast<size_t>(vocab);
    if (found->second->beams) {
      beam_rows[scheduled.request][scheduled.sequence] = row_logits;
      continue;
    }
    advance(*found->second, scheduled.sequence, row_logits, all_greedy ? greedy_tokens[row] : -1);
  }
  for (const auto& [id, rows] : beam_rows) advance_beams(*active_.at(id), rows);
  const double sample_seconds = seconds_since(sample_start);

  std::lock_guard<std::mutex> lock(mutex_);
  stats_.steps += 1;
  stats_.prefill_tokens += step.num_prefill_tokens;
  stats_.decode_tokens += step.num_decode_tokens;
  stats_.max_running_sequences =
      std::max(stats_.max_running_sequences, scheduler_.num_running_sequences());
  stats_.schedule_seconds += schedule_seconds;
  stats_.forward_seconds += forward_seconds;
  stats_.sample_seconds += sample_seconds;
  return true;
}

void ContinuousEngine::advance(Active& active, SequenceId sequence, const float* logits,
                               int32_t greedy_token) {
  const int32_t vocab = static_cast<int32_t>(model_.config().vocab_size);
  std::vector<SequenceId> rows = {sequence};
  // The prompt's step of a request with n > 1: fork the other samples now, so that they share
  // the prompt's blocks, and sample every choice from the same prompt logits.
  if (!active.forked) {
    active.forked = true;
    for (size_t choice = 1; choice < active.choices.size(); ++choice) {
      const SequenceId child = scheduler_.fork(sequence);
      active.choice_of[child] = static_cast<int>(choice);
      rows.push_back(child);
    }
  }
  for (SequenceId row : rows) {
    const auto position = active.choice_of.find(row);
    if (position == active.choice_of.end()) continue;
    ChoiceOutput& choice = *active.choices[static_cast<size_t>(position->second)];
    int32_t token = greedy_token;
    if (logits != nullptr) {
      token = choice.next_token(logits, vocab);
    } else {
      choice.accept_token(token);
    }
    if (!choice.done()) {
      scheduler_.append_token(row, token);
      continue;
    }
    active.choice_of.erase(position);
    if (active.choice_of.empty()) {
      release(active.id);  // destroys `active`
      return;
    }
    scheduler_.free_sequence(row);
  }
}

void ContinuousEngine::advance_beams(Active& active,
                                     const std::map<SequenceId, const float*>& rows) {
  const int32_t vocab = static_cast<int32_t>(model_.config().vocab_size);
  const GenerationConfig& config = active.request.config;
  // Each running beam's log-probabilities, processed as Hugging Face does for beam search: the
  // processors act on log-softmax scores (repetition penalty, EOS masked before min_new_tokens).
  std::vector<std::vector<float>> log_probs(active.beam_sequences.size());
  std::vector<const float*> pointers;
  const int64_t generated = static_cast<int64_t>(active.beam_tokens.front().size());
  for (size_t beam = 0; beam < active.beam_sequences.size(); ++beam) {
    const auto row = rows.find(active.beam_sequences[beam]);
    if (row == rows.end())
      fail("beam search: beam ", beam, " of request ", active.id, " was not in the step");
    std::vector<float>& scores = log_probs[beam];
    scores = log_softmax(std::vector<float>(row->second, row->second + vocab));
    if (config.repetition_penalty != 1.0) {
      std::vector<int32_t> seen = active.request.prompt_tokens;
      seen.insert(seen.end(), active.beam_tokens[beam].begin(), active.beam_tokens[beam].end());
      apply_repetition_penalty(scores, seen, static_cast<float>(config.repetition_penalty));
    }
    if (!config.ignore_eos && generated < config.min_new_tokens)
      for (int32_t eos : tokenizer_.eos_ids())
        if (eos >= 0 && eos < vocab) scores[static_cast<size_t>(eos)] = -INFINITY;
    pointers.push_back(scores.data());
  }
  const std::vector<BeamContinuation> next =
      active.beams->step(pointers, vocab, active.beam_tokens);

  // The search is over: answer with the best hypotheses and free every beam (no fork needed).
  if (active.beams->done()) {
    const std::vector<BeamHypothesis> best = active.beams->finalize();
    for (size_t index = 0; index < best.size(); ++index) {
      IncrementalDetokenizer detokenizer(tokenizer_, active.request.prompt_tokens);
      std::string text;
      for (int32_t token : best[index].tokens) text += detokenizer.push(token);
      text += detokenizer.finish();
      OutputEvent piece;
      piece.kind = OutputEvent::Kind::kText;
      piece.index = static_cast<int>(index);
      piece.text = std::move(text);
      if (!piece.text.empty()) active.request.output->send(piece);
      OutputEvent finished;
      finished.kind = OutputEvent::Kind::kFinished;
      finished.index = static_cast<int>(index);
      finished.finish_reason = best[index].ended_with_eos ? "stop" : "length";
      finished.completion_tokens =
          static_cast<int64_t>(best[index].tokens.size()) + (best[index].ended_with_eos ? 1 : 0);
      active.request.output->send(std::move(finished));
    }
    release(active.id);  // destroys `active`
    return;
  }
  // The new beams' sequences: a parent's first continuation keeps its sequence, each further one
  // forks it (sharing its blocks, copy-on-write); parents with no continuation are freed.
  std::vector<SequenceId> sequences(next.size());
  std::vector<std::vector<int32_t>> tokens(next.size());
  std::vector<bool> parent_used(active.beam_sequences.size(), false);
  for (size_t i = 0; i < next.size(); ++i) {
    const size_t parent = static_cast<size_t>(next[i].parent);
    const SequenceId parent_sequence = active.beam_sequences[parent];
    sequences[i] = parent_used[parent] ? scheduler_.fork(parent_sequence) : parent_sequence;
    parent_used[parent] = true;
    tokens[i] = active.beam_tokens[parent];
    tokens[i].push_back(next[i].token);
  }
  for (size_t i = 0; i < next.size(); ++i) scheduler_.append_token(sequences[i], next[i].token);
  for (size_t parent = 0; parent < parent_used.size(); ++parent)
    if (!parent_used[parent]) scheduler_.free_sequence(active.beam_sequences[parent]);
  active.beam_sequences = std::move(sequences);
  active.beam_tokens = std::move(tokens);
}

}  // namespace servelab
