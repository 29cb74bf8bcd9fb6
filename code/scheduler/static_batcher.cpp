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
#include "sampling/sampler.h"
#include "tokenizer/incremental_detokenizer.h"

namespace servelab {
namespace {

OutputEvent error_event(std::string message, int status) {
  OutputEvent event;
  event.kind = OutputEvent::Kind::kError;
  event.error = std::move(message);
  event.status = status;
  return event;
}

/// The length of the longest suffix of `text` that is a proper prefix of one of `stops`: those
/// bytes may still become a stop string, so they are not streamed yet.
size_t stop_prefix_held_back(const std::string& text, const std::vector<std::string>& stops) {
  size_t held = 0;
  for (const std::string& stop : stops) {
    const size_t longest = std::min(stop.size() - (stop.empty() ? 0 : 1), text.size());
    for (size_t length = longest; length > held; --length) {
      if (text.compare(text.size() - length, length, stop, 0, length) == 0) {
        held = length;
        break;
      }
    }
  }
  return held;
}

/// The earliest stop string in `text` that ends after byte `old_size` (text before it was already
/// searched, or was produced before min_new_tokens and must not stop the row); npos if none.
size_t find_stop(const std::string& text, size_t old_size, const std::vector<std::string>& stops) {
  size_t best = std::string::npos;
  for (const std::string& stop : stops) {
    if (stop.empty()) continue;
    const size_t from = old_size >= stop.size() - 1 ? old_size - (stop.size() - 1) : 0;
    const size_t found = text.find(stop, from);
    if (found != std::string::npos && found < best) best = found;
  }
  return best;
}

}  // namespace

/// A request of the running package.
struct StaticBatcher::RunningRequest {
  ServingRequest request;
  int64_t rows_left = 0;
};

/// One choice of one request: one row of the package.
struct StaticBatcher::Row {
  Row(RunningRequest* owner_in, int index_in, ContiguousKvCache cache_in,
      const SamplingParams& params, const Tokenizer& tokenizer, int64_t budget_in)
      : owner(owner_in),
        index(index_in),
        cache(std::move(cache_in)),
        sampler(params),
        detokenizer(tokenizer, owner_in->request.prompt_tokens),
        history(owner_in->request.prompt_tokens),
        next_tokens(owner_in->request.prompt_tokens),
        budget(budget_in) {}

  RunningRequest* owner;
  int index;
  ContiguousKvCache cache;
  Sampler sampler;
  IncrementalDetokenizer detokenizer;
  std::vector<int32_t> history;      // prompt + generated, for the repetition penalty
  std::vector<int32_t> next_tokens;  // what the next forward call feeds: the prompt, then 1 token
  int64_t budget;                    // max_new_tokens clamped to the context
  int64_t generated = 0;
  std::string text;  // the choice's text so far (cut before a stop string once one is found)
  size_t sent = 0;   // bytes of `text` already streamed
  bool done = false;
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
    refusal = str_cat("This model's maximum context length is ", context,
                      " tokens; the prompt alone has ", prompt_length);
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
    request.output->send(error_event("the server is shutting down", 503));
    return;
  }
  if (options_.max_waiting > 0 && static_cast<int64_t>(queue_.size()) >= options_.max_waiting) {
    lock.unlock();
    request.output->send(error_event(
        str_cat("the server is overloaded: ", options_.max_waiting, " requests already wait"),
        429));
    return;
  }
  const RequestId id = next_id_++;
  const double now =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
  queue_.push_back({id, config, workload_of(config), now});
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
  const GenerationConfig& config = package.config;

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
      const uint64_t seed = config.seed ? *config.seed : seed_source_();
      const int64_t prompt_length = static_cast<int64_t>(owner->request.prompt_tokens.size());
      const int64_t budget = std::min(config.max_new_tokens, context - prompt_length);
      std::vector<std::unique_ptr<Row>> request_rows;
      try {
        for (int64_t choice = 0; choice < config.num_return_sequences; ++choice) {
          SamplingParams params = config.to_sampling_params(seed);
          params.seed = seed + static_cast<uint64_t>(choice);  // the n samples must differ
          request_rows.push_back(std::make_unique<Row>(owner.get(), static_cast<int>(choice),
                                                       model_.new_kv_cache(prompt_length + budget),
                                                       params, tokenizer_, budget));
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
  auto send_text = [](Row& row, size_t end) {
    if (end <= row.sent) return;
    OutputEvent event;
    event.kind = OutputEvent::Kind::kText;
    event.index = row.index;
    event.text = row.text.substr(row.sent, end - row.sent);
    row.sent = end;
    row.owner->request.output->send(std::move(event));
  };
  auto release = [&](Row& row) {
    row.done = true;
    used += row.cache.length;
    row.cache = ContiguousKvCache{};  // the memory goes back now, not at the package's end
    row.owner->rows_left -= 1;
  };
  // Appends detokenized text; returns true when a stop string ended the row's text.
  auto append = [&](Row& row, const std::string& piece) {
    if (piece.empty()) return false;
    const size_t old_size = row.text.size();
    row.text += piece;
    if (row.generated >= config.min_new_tokens) {
      const size_t stop_at = find_stop(row.text, old_size, config.stop);
      if (stop_at != std::string::npos) {
        row.text.resize(std::max(stop_at, row.sent));
        return true;
      }
    }
    // Stream all but a tail that may still grow into a stop string, cut at a UTF-8 boundary.
    size_t end = row.text.size() - stop_prefix_held_back(row.text, config.stop);
    while (end > row.sent && end < row.text.size() &&
           (static_cast<unsigned char>(row.text[end]) & 0xC0) == 0x80)
      --end;
    send_text(row, end);
    return false;
  };
  auto finish = [&](Row& row, std::string reason, bool stopped_by_string) {
    if (!stopped_by_string && append(row, row.detokenizer.finish())) reason = "stop";
    send_text(row, row.text.size());
    OutputEvent event;
    event.kind = OutputEvent::Kind::kFinished;
    event.index = row.index;
    event.finish_reason = std::move(reason);
    event.completion_tokens = row.generated;
    row.owner->request.output->send(std::move(event));
    release(row);
  };

  std::vector<float> masked(static_cast<size_t>(vocab));
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
          finish(*row, "abort", /*stopped_by_string=*/false);
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
        const float* row_logits = logits.f32() + position * static_cast<size_t>(vocab);
        if (!config.ignore_eos && row.generated < config.min_new_tokens) {
          // min_new_tokens: EOS may not be chosen yet (Hugging Face's MinNewTokensLength).
          std::copy(row_logits, row_logits + vocab, masked.begin());
          for (int32_t eos : tokenizer_.eos_ids())
            if (eos >= 0 && eos < vocab) masked[static_cast<size_t>(eos)] = -INFINITY;
          row_logits = masked.data();
        }
        const int32_t token = row.sampler.sample(row_logits, vocab, row.history);
        row.generated += 1;
        row.history.push_back(token);
        if (!config.ignore_eos && tokenizer_.is_eos(token)) {
          finish(row, "stop", /*stopped_by_string=*/false);
          continue;
        }
        if (append(row, row.detokenizer.push(token))) {
          finish(row, "stop", /*stopped_by_string=*/true);
          continue;
        }
        if (row.generated >= row.budget) {
          finish(row, "length", /*stopped_by_string=*/false);
          continue;
        }
        row.next_tokens.assign(1, token);
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
