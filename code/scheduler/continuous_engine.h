// The engine of the continuous-batching server: one thread that runs the ContinuousScheduler's
// iterations over the paged KV cache (cache engine + step runner), samples every sequence with its
// own settings, forks parallel samples, and streams each choice's text. It never talks HTTP or
// blocks on a socket; the scheduling decisions are the scheduler's.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "cache_engine/cache_engine.h"
#include "engine/step_runner.h"
#include "model/llama_model.h"
#include "scheduler/beam_search.h"
#include "scheduler/choice_output.h"
#include "scheduler/continuous_batcher.h"
#include "scheduler/serving.h"
#include "tokenizer/tokenizer.h"

namespace servelab {

struct ContinuousEngineOptions {
  /// batch limits, preemption mode and the block pools' sizes (blocks.num_gpu_blocks and
  /// num_cpu_blocks must be set: see serve_command.cpp for how the server sizes them).
  ContinuousSchedulerConfig scheduler;
  /// The most requests waiting for admission (0: unbounded); submit() answers 429 past it.
  int64_t max_waiting = 0;
};

/// What the engine has done since it started (for tests, benchmarks and the docs).
struct ContinuousEngineStats {
  int64_t steps = 0;
  int64_t prefill_tokens = 0, decode_tokens = 0;
  int64_t max_running_sequences = 0;
  /// Time on the engine thread: the scheduler's schedule() and the batch's making, against the
  /// forward (cache plan included) and the sampling of the step's rows.
  double schedule_seconds = 0, forward_seconds = 0, sample_seconds = 0;
  ContinuousSchedulerStats scheduler;
};

/// The continuous-batching ServingEngine.
///
/// submit() puts a request in an inbox; the engine thread moves it to the scheduler's waiting
/// queue before its next iteration. Each iteration: drop requests whose client left (their blocks
/// are freed, wherever they are), schedule(), answer rejected requests (400), run the step's
/// prefills and decodes in one forward call, then give each sequence's logits to its choice's
/// ChoiceOutput (its own sampler, seed, penalties, stop strings, min/max tokens): greedy and
/// sampled rows mix in one step, and a seeded choice gives the same tokens whatever else runs.
/// A request with n > 1 prefills its prompt once, then forks n - 1 sequences that share the
/// prompt's blocks (copy-on-write) and samples each choice from the same prompt logits.
/// A finished choice frees its sequence at once; the last one frees the request.
///
/// When every row of a step is greedy and has nothing that reads the logits, the argmax is taken
/// on the device (StepRunner::run_greedy) and no logits are copied to the host.
class ContinuousEngine : public ServingEngine {
 public:
  /// Allocates the cache engine's pools. The model and tokenizer must outlive the engine.
  ContinuousEngine(LlamaModel& model, const Tokenizer& tokenizer, ContinuousEngineOptions options);
  ~ContinuousEngine() override;
  ContinuousEngine(const ContinuousEngine&) = delete;
  ContinuousEngine& operator=(const ContinuousEngine&) = delete;

  void start() override;
  /// Queues `request`, or answers at once with a kError event: 503 when stopping, 429 when
  /// max_waiting requests wait, 400 for settings this engine cannot run (beam sampling, stop
  /// strings with beams, a prompt that fills the context). A request that can never fit the
  /// batch or the KV cache (ContinuousScheduler::check) is answered with a 400 by the engine
  /// thread when it takes the request in, before the next step.
  void submit(ServingRequest request) override;
  void stop(std::chrono::milliseconds grace) override;
  EngineGauges gauges() const override;
  std::string batching() const override { return "continuous"; }
  ContinuousEngineStats stats() const;

 private:
  struct Active;

  void engine_loop();
  /// Moves the inbox into the scheduler and drops cancelled requests. Holds mutex_.
  void intake_locked();
  /// Runs one iteration; false when there was nothing to run.
  bool run_step();
  /// Hands one sequence's next token (or logits) to its choice and updates the scheduler.
  void advance(Active& active, SequenceId sequence, const float* logits, int32_t greedy_token);
  /// One beam-search step of a request from its beams' logits (by sequence).
  void advance_beams(Active& active, const std::map<SequenceId, const float*>& rows);
  /// The request is over (every choice finished, cancelled or failed): free it.
  void release(int64_t request);
  void abort_all(const std::string& finish_reason);
  void publish_gauges();

  LlamaModel& model_;
  const Tokenizer& tokenizer_;
  ContinuousEngineOptions options_;
  ContinuousScheduler scheduler_;                      // engine thread only
  CacheEngine cache_;                                  // engine thread only
  StepRunner runner_;                                  // engine thread only
  std::map<int64_t, std::unique_ptr<Active>> active_;  // engine thread only: admitted requests

  mutable std::mutex mutex_;
  std::condition_variable work_ready_;
  std::vector<ServingRequest> inbox_;
  int64_t next_id_ = 1;
  std::mt19937_64 seed_source_;  // per-request seeds when the config has none
  bool stopping_ = false;
  std::chrono::steady_clock::time_point abort_deadline_;
  EngineGauges gauges_;
  ContinuousEngineStats stats_;
  std::thread thread_;
};

}  // namespace servelab
