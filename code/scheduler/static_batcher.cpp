// The static-batching engine thread (see static_batcher.h).
#include "scheduler/static_batcher.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "scheduler/choice_output.h"

namespace servelab {

/// A request of the running package.
struct StaticBatcher::RunningRequest {
  ServingRequest request;
  int64_t rows_left = 0;
};

/// One choice of one request: one row of the package.
struct StaticBatcher::Row {
  Row(RunningRequest* owner_in, int index, ContiguousKvCache cache_in, const Tokenizer& tokenizer,
      const GenerationConfig& config, int64_t budget, uint64_t seed)
      : owner(owner_in),
        cache(std::move(cache_in)),
        output(tokenizer, owner_in->request.prompt_tokens, config, index, budget, seed,
               owner_in->request.output),
        next_tokens(owner_in->request.prompt_tokens) {}

  RunningRequest* owner;
  ContiguousKvCache cache;
  ChoiceOutput output;               // sampling, stop strings, streaming, the finish event
  std::vector<int32_t> next_tokens;  // what the next forward call feeds: the prompt, then 1 token
  bool done = false;                 // finished, cancelled or failed: its cache is freed
};

StaticBatcher::StaticBatcher(LlamaModel& model, const Tokenizer& tokenizer,
                             StaticBatcherOptions options)
    : model_(model),
      tokenizer_(tokenizer),
      options_(options),
      seed_source_(std::random_device{}()) {
  if (options_.package_max_workload < 1)
    fail("package_max_workload must be at least 1, got ", options_.package_max_workload);
  if (!(options_.packaging_interval_seconds >= 0))
    fail("packaging_interval must be >= 0 seconds, got ", options_.packaging_interval_seconds);
  if (options_.max_waiting < 0)
    fail("max_waiting must be >= 0 (0: unbounded), got ", options_.max_waiting);
}

StaticBatcher::~StaticBatcher() {
  stop(std::chrono::milliseconds(0));
}

void StaticBatcher::start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { engine_loop(); });
}

void StaticBatcher::submit(ServingRequest request) {
  const GenerationConfig& config = request.config;
  const int64_t prompt_length = static_cast<int64_t>(request.prompt_tokens.size());
  const int64_t context = model_.config().max_position_embeddings;
  std::string refusal;
  if (prompt_length == 0) {
    refusal = "the prompt is empty (no tokens)";
  } else if (prompt_length >= context) {
    refusal = prompt_too_long(context, prompt_length);
  } else if (config.num_beams > 1) {
    refusal = "beam search (num_beams > 1) is not supported by the static batcher";
  } else if (config.num_return_sequences < 1 || config.max_new_tokens < 1) {
    refusal = "num_return_sequences and max_new_tokens must be at least 1";
  }
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
  if (options_.max_waiting > 0 && static_cast<int64_t>(queue_.size()) >= options_.max_waiting) {
    lock.unlock();
    request.output->send(overloaded_event(options_.max_waiting));
    return;
  }
  const RequestId id = next_id_++;
  const double now =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
  // The packer compares configs with ==; the key it sees leaves the token budget out when
  // packing across budgets, and each row still takes its own request's config (run_package).
  GenerationConfig packing_key = config;
  if (options_.pack_across_token_budgets)
    packing_key.max_new_tokens = packing_key.min_new_tokens = 0;
  queue_.push_back({id, packing_key, workload_of(config), now});
  requests_.emplace(id, std::move(request));
  lock.unlock();
  work_ready_.notify_all();
}

void StaticBatcher::stop(std::chrono::milliseconds grace) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!stopping_) {
      stopping_ = true;
      abort_deadline_ = std::chrono::steady_clock::now() + grace;
    }
    fail_waiting_locked("the server is shutting down", 503);
  }
  work_ready_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

EngineGauges StaticBatcher::gauges() const {
  std::lock_guard<std::mutex> lock(mutex_);
  EngineGauges gauges;
  gauges.running = running_requests_;
  gauges.waiting = static_cast<int64_t>(queue_.size()) +
                   (next_package_ ? static_cast<int64_t>(next_package_->requests.size()) : 0);
  return gauges;
}

StaticBatcherStats StaticBatcher::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void StaticBatcher::fail_waiting_locked(const std::string& message, int status) {
  // Both the pending package and the queue hold requests that never started.
  for (auto& entry : requests_) entry.second.output->send(error_event(message, status));
  requests_.clear();
  queue_.clear();
  next_package_.reset();
}

void StaticBatcher::maybe_pack_locked(bool engine_idle) {
  if (next_package_) return;  // one package waits at most; it is fixed once packed
  const double now =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
  if (!should_pack_now(engine_idle, now, last_pack_seconds_, options_.packaging_interval_seconds,
                       queue_.empty()))
    return;
  next_package_ = pack(queue_, options_.package_max_workload);
  last_pack_seconds_ = now;
}

void StaticBatcher::engine_loop() {
  while (true) {
    Package package;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [&] { return stopping_ || next_package_ || !queue_.empty(); });
      if (stopping_) return;  // stop() answered everything still waiting
      maybe_pack_locked(/*engine_idle=*/true);
      if (!next_package_) continue;
      package = std::move(*next_package_);
      next_package_.reset();
    }
    run_package(std::move(package));
  }
}

void StaticBatcher::run_package(Package package) {
  const int64_t context = model_.config().max_position_embeddings;
  const int32_t vocab = static_cast<int32_t>(model_.config().vocab_size);
  // Take the package's requests out of the shared map and build one row per choice.
  std::vector<std::unique_ptr<RunningRequest>> running;
  std::vector<std::unique_ptr<Row>> rows;
  int64_t reserved = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (RequestId id : package.requests) {
      auto found = requests_.find(id);
      if (found == requests_.end()) continue;
      auto owner = std::make_unique<RunningRequest>();
      owner->request = std::move(found->second);
      requests_.erase(found);
      if (owner->request.output->cancelled()) continue;  // its client left while it waited
      // The request's own config: with pack_across_token_budgets the package's config has no
      // token budget, and the rows of one package each have their own.
      const GenerationConfig& config = owner->request.config;
      const uint64_t seed = config.seed ? *config.seed : seed_source_();
      const int64_t prompt_length = static_cast<int64_t>(owner->request.prompt_tokens.size());
      const int64_t budget = std::min(config.max_new_tokens, context - prompt_length);
      std::vector<std::unique_ptr<Row>> request_rows;
      try {
        for (int64_t choice = 0; choice < config.num_return_sequences; ++choice) {
          // seed + choice: the n samples must differ, and repeat with the same seed.
          request_rows.push_back(std::make_unique<Row>(
              owner.get(), static_cast<int>(choice), model_.new_kv_cache(prompt_length + budget),
              tokenizer_, config, budget, seed + static_cast<uint64_t>(choice)));
          reserved += prompt_length + budget;
        }
      } catch (const Error& error) {
        owner->request.output->send(error_event(error.what(), 400));
        continue;
      }
      owner->rows_left = static_cast<int64_t>(request_rows.size());
      for (auto& row : request_rows) rows.push_back(std::move(row));
      running.push_back(std::move(owner));
    }
    running_requests_ = static_cast<int64_t>(running.size());
    stats_.packages += 1;
    stats_.kv_positions_reserved += reserved;
  }

  int64_t used = 0;
  auto release = [&](Row& row) {
    row.done = true;
    used += row.cache.length;
    row.cache = ContiguousKvCache{};  // the memory goes back now, not at the package's end
    row.owner->rows_left -= 1;
  };

  std::vector<ForwardSequence> batch;
  std::vector<Row*> active;
  try {
    while (true) {
      bool abort_now = false;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        abort_now = stopping_ && std::chrono::steady_clock::now() >= abort_deadline_;
      }
      batch.clear();
      active.clear();
      for (auto& row : rows) {
        if (row->done) continue;
        if (row->owner->request.output->cancelled()) {
          release(*row);  // nobody listens: drop it silently and free its cache
        } else if (abort_now) {
          row->output.finish("abort");
          release(*row);
        } else {
          active.push_back(row.get());
          batch.push_back({row->next_tokens, &row->cache});
        }
      }
      if (active.empty()) break;

      // All rows in one call: prompts of different lengths at prefill (packed, no padding
      // tokens), one token each at decode. Rows already done are not computed, but they keep the
      // package alive: that is the static batch's padding.
      Tensor logits = model_.forward(batch);  // [active rows, vocab], fp32, host
      {
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.forward_calls += 1;
        stats_.computed_row_steps += static_cast<int64_t>(active.size());
        stats_.idle_row_steps += static_cast<int64_t>(rows.size() - active.size());
      }
      for (size_t position = 0; position < active.size(); ++position) {
        Row& row = *active[position];
        const int32_t token =
            row.output.next_token(logits.f32() + position * static_cast<size_t>(vocab), vocab);
        if (row.output.done()) {
          release(row);
        } else {
          row.next_tokens.assign(1, token);
        }
      }
      std::lock_guard<std::mutex> lock(mutex_);
      maybe_pack_locked(/*engine_idle=*/false);  // the tick: fixes what runs next
    }
  } catch (const std::exception& error) {
    // A failure of the model or the sampler ends the package: its unfinished requests are told.
    for (auto& owner : running)
      if (owner->rows_left > 0)
        owner->request.output->send(error_event(str_cat("generation failed: ", error.what()), 500));
    for (auto& row : rows)
      if (!row->done) release(*row);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  running_requests_ = 0;
  stats_.kv_positions_used += used;
}

}  // namespace servelab
