// The engine of the static-batching server: one thread that packs waiting requests with identical
// generation configs into a package (static_packer.h) and runs it to completion over naive
// contiguous KV caches, streaming every choice's text. It never talks HTTP or blocks on a socket.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>

#include "model/llama_model.h"
#include "scheduler/serving.h"
#include "scheduler/static_packer.h"
#include "tokenizer/tokenizer.h"

namespace servelab {

struct StaticBatcherOptions {
  /// The most sequences (rows) in one package; a request takes workload_of(config) rows.
  int64_t package_max_workload = 8;
  /// While a package runs, the next one is packed this often (seconds); when the engine is idle
  /// and work is waiting it packs at once.
  double packaging_interval_seconds = 0.05;
  /// The most requests in the queue (0: unbounded); submit() answers 429 past it.
  int64_t max_waiting = 0;
  /// false (the default, the historical rule): a package holds requests whose configs are
  /// identical in every field. true: the token budget (max_new_tokens, min_new_tokens) is left
  /// out of the comparison, so requests that differ only in their lengths share a package; each
  /// row stops at its own budget and the package still runs until its longest row ends. The
  /// stronger baseline for comparisons on traces, where every request has its own length.
  bool pack_across_token_budgets = false;
};

/// What the static batcher has done since it started, for tests, benchmarks and the docs' waste
/// numbers. A "row step" is one row (one choice) in one forward call of a package.
struct StaticBatcherStats {
  int64_t packages = 0;            ///< packages run (started)
  int64_t forward_calls = 0;       ///< prefill and decode calls
  int64_t computed_row_steps = 0;  ///< rows that were computed, summed over forward calls
  /// Rows that were done (EOS, stop string, budget) while their package still ran, summed over
  /// forward calls: the slots a static batch holds for nothing. A continuous batcher would refill
  /// them with waiting requests.
  int64_t idle_row_steps = 0;
  /// KV positions reserved by the contiguous caches (prompt + max_new_tokens per row) and
  /// positions actually written when the rows ended, summed over every package.
  int64_t kv_positions_reserved = 0;
  int64_t kv_positions_used = 0;
};

/// The static-batching ServingEngine.
///
/// One engine thread. submit() appends to a FIFO queue. When the engine is idle and work is
/// waiting it packs at once (pack() takes the oldest request and the later ones with an identical
/// config, up to package_max_workload rows); while a package runs, the next package is packed on
/// the packaging-interval tick and waits for the running one to end. A package runs to
/// completion: every choice is one row with its own ContiguousKvCache of prompt + max_new_tokens
/// positions (clamped to the context), all rows are prefilled in one forward call, then decoded
/// together, one token per row per call, until every row is done. Rows that end early stop
/// computing, but the package (and its caches' memory) lasts until its longest row is done.
///
/// Per row: its own Sampler (seed = config.seed, or a per-request seed drawn by the engine, plus
/// the choice index so that the n choices differ), repetition-penalty history, EOS suppressed
/// before min_new_tokens, ignore_eos, stop strings. Text is streamed as kText events (index =
/// choice), holding back any tail that could be the start of a stop string; each choice ends with
/// one kFinished event ("stop" for EOS or a stop string, "length" for the budget, "abort" when
/// stop() ran out of grace). completion_tokens counts every generated token, EOS included and the
/// stop string's tokens included, as Generator's token_ids does.
///
/// Requests whose channel is cancelled are dropped within one step and their caches freed.
/// Greedy rows give exactly what Generator gives for the same prompt and budget.
class StaticBatcher : public ServingEngine {
 public:
  /// The model and the tokenizer must outlive the batcher. Throws servelab::Error for options out
  /// of range (package_max_workload < 1, a negative interval or max_waiting).
  StaticBatcher(LlamaModel& model, const Tokenizer& tokenizer, StaticBatcherOptions options = {});
  /// Stops with no grace if still running.
  ~StaticBatcher() override;

  StaticBatcher(const StaticBatcher&) = delete;
  StaticBatcher& operator=(const StaticBatcher&) = delete;

  void start() override;
  /// Queues `request`. Answers at once with a kError event instead when the batcher is stopping
  /// (503), the queue is full (429), or the request cannot run: an empty prompt or one that fills
  /// the context, beam search (400).
  void submit(ServingRequest request) override;
  void stop(std::chrono::milliseconds grace) override;
  /// running: requests in the package being run; waiting: queued ones plus the next package's;
  /// kv_usage 0 (no block pool: see stats() for the contiguous caches' positions).
  EngineGauges gauges() const override;
  std::string batching() const override { return "static"; }
  StaticBatcherStats stats() const;

 private:
  struct Row;
  struct RunningRequest;

  void engine_loop();
  /// Packs the next package from the queue when should_pack_now says so. Caller holds mutex_.
  void maybe_pack_locked(bool engine_idle);
  void run_package(Package package);
  /// Answers every request of the pending package and the queue with `status`. Holds mutex_.
  void fail_waiting_locked(const std::string& message, int status);

  LlamaModel& model_;
  const Tokenizer& tokenizer_;
  StaticBatcherOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable work_ready_;
  std::deque<WaitingRequest> queue_;  // arrival order; ids are the batcher's own sequence numbers
  std::unordered_map<RequestId, ServingRequest> requests_;  // every queued or packed request
  std::optional<Package> next_package_;                     // packed on a tick, not yet running
  double last_pack_seconds_ = 0;
  RequestId next_id_ = 1;
  std::mt19937_64 seed_source_;  // per-request seeds when the config has none
  bool stopping_ = false;
  std::chrono::steady_clock::time_point abort_deadline_;
  int64_t running_requests_ = 0;
  StaticBatcherStats stats_;

  std::thread thread_;
  std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
};

}  // namespace servelab
