#include "kv_waste_model.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace servelab {

std::string KvScheme::name() const {
  return kind == Kind::kPaged ? str_cat("paged-", block_size) : str_cat("contiguous-", max_length);
}

bool KvScheme::admits(const TraceRequest& request) const {
  return kind == Kind::kPaged || request.prompt_tokens + request.output_tokens <= max_length;
}

KvLedger::KvLedger(const KvScheme& scheme, int64_t pool_blocks) : scheme_(scheme) {
  if (scheme.kind == KvScheme::Kind::kPaged) {
    if (scheme.block_size < 1) fail("kv waste: block size must be >= 1, got ", scheme.block_size);
    BlockManagerConfig config;
    config.block_size = scheme.block_size;
    config.num_gpu_blocks = pool_blocks;
    config.num_cpu_blocks = 0;
    config.watermark = 0;  // admission is not modelled: every request is let in
    block_manager_ = std::make_unique<BlockManager>(config);
  } else if (scheme.max_length < 1) {
    fail("kv waste: max length must be >= 1, got ", scheme.max_length);
  }
}

KvLedger::~KvLedger() = default;

int64_t& KvLedger::tokens_of(int64_t id, const char* operation) {
  const auto found = tokens_.find(id);
  if (found == tokens_.end()) fail("kv waste: ", operation, ": request ", id, " is not live");
  return found->second;
}

void KvLedger::start(int64_t id, int64_t prompt_tokens) {
  if (tokens_.count(id)) fail("kv waste: start: request ", id, " is already live");
  if (prompt_tokens < 1) fail("kv waste: start: request ", id, " has an empty prompt");
  if (scheme_.kind == KvScheme::Kind::kContiguous) {
    if (prompt_tokens > scheme_.max_length) {
      fail("kv waste: request ", id, " has ", prompt_tokens, " prompt tokens, more than ",
           scheme_.name(), " reserves");
    }
    allocated_slots_ += scheme_.max_length;
  } else {
    // Prefix caching is off, so the token ids do not matter: only their number does.
    if (static_cast<int64_t>(prompt_scratch_.size()) < prompt_tokens) {
      prompt_scratch_.resize(prompt_tokens, 0);
    }
    const std::vector<int32_t> prompt(prompt_scratch_.begin(),
                                      prompt_scratch_.begin() + prompt_tokens);
    block_manager_->allocate(id, id, prompt);
    allocated_slots_ = block_manager_->gpu_pool().num_used() * scheme_.block_size;
  }
  tokens_[id] = prompt_tokens;
  used_slots_ += prompt_tokens;
}

void KvLedger::append_token(int64_t id) {
  int64_t& tokens = tokens_of(id, "append_token");
  if (scheme_.kind == KvScheme::Kind::kContiguous) {
    if (tokens + 1 > scheme_.max_length) {
      fail("kv waste: request ", id, " grows past the ", scheme_.max_length, " slots of ",
           scheme_.name());
    }
  } else {
    block_manager_->append_slot(id, 0);
    allocated_slots_ = block_manager_->gpu_pool().num_used() * scheme_.block_size;
    const int64_t blocks = static_cast<int64_t>(block_manager_->block_table(id).size());
    if (blocks != block_manager_->blocks_for(tokens + 1)) {
      fail("kv waste: the block manager gives request ", id, " ", blocks, " blocks for ",
           tokens + 1, " tokens of ", scheme_.block_size, "; expected ",
           block_manager_->blocks_for(tokens + 1));
    }
  }
  ++tokens;
  ++used_slots_;
}

void KvLedger::finish(int64_t id) {
  const int64_t tokens = tokens_of(id, "finish");
  if (scheme_.kind == KvScheme::Kind::kContiguous) {
    allocated_slots_ -= scheme_.max_length;
  } else {
    block_manager_->free_request(id);
    allocated_slots_ = block_manager_->gpu_pool().num_used() * scheme_.block_size;
  }
  used_slots_ -= tokens;
  tokens_.erase(id);
}

SlotSample KvLedger::of(int64_t id) const {
  const auto found = tokens_.find(id);
  if (found == tokens_.end()) fail("kv waste: request ", id, " is not live");
  if (scheme_.kind == KvScheme::Kind::kContiguous) return {scheme_.max_length, found->second};
  const int64_t blocks = static_cast<int64_t>(block_manager_->block_table(id).size());
  return {blocks * scheme_.block_size, found->second};
}

int64_t blocks_to_hold_all(const std::vector<TraceRequest>& requests, int64_t block_size) {
  int64_t blocks = 0;
  for (const TraceRequest& request : requests) {
    blocks += (request.prompt_tokens + request.output_tokens + block_size - 1) / block_size;
  }
  return std::max<int64_t>(blocks, 1);
}

std::vector<SlotSample> request_step_samples(const TraceRequest& request, const KvScheme& scheme) {
  KvLedger ledger(scheme, blocks_to_hold_all({request}, std::max<int64_t>(scheme.block_size, 1)));
  std::vector<SlotSample> samples;
  ledger.start(0, request.prompt_tokens);
  for (int64_t step = 0; step < request.output_tokens; ++step) {
    ledger.append_token(0);
    samples.push_back(ledger.of(0));
  }
  ledger.finish(0);
  return samples;
}

double LifetimeWaste::waste_fraction() const {
  return allocated_slot_steps == 0
             ? 0.0
             : static_cast<double>(allocated_slot_steps - used_slot_steps) / allocated_slot_steps;
}

double LifetimeWaste::waste_fraction_at_end() const {
  return allocated_slots_at_end == 0
             ? 0.0
             : static_cast<double>(allocated_slots_at_end - used_slots_at_end) /
                   allocated_slots_at_end;
}

LifetimeWaste measure_lifetime_waste(const std::vector<TraceRequest>& requests,
                                     const KvScheme& scheme) {
  LifetimeWaste waste;
  waste.scheme = scheme.name();
  // One request at a time: the pool needs only the longest one.
  int64_t longest = 1;
  for (const TraceRequest& request : requests) {
    longest = std::max(longest, request.prompt_tokens + request.output_tokens);
  }
  const int64_t block_size = std::max<int64_t>(scheme.block_size, 1);
  KvLedger ledger(scheme, (longest + block_size - 1) / block_size);
  for (size_t index = 0; index < requests.size(); ++index) {
    const TraceRequest& request = requests[index];
    if (!scheme.admits(request)) {
      ++waste.rejected_requests;
      continue;
    }
    ++waste.requests;
    const int64_t id = static_cast<int64_t>(index);
    ledger.start(id, request.prompt_tokens);
    SlotSample last;
    for (int64_t step = 0; step < request.output_tokens; ++step) {
      ledger.append_token(id);
      last = ledger.of(id);
      waste.allocated_slot_steps += last.allocated_slots;
      waste.used_slot_steps += last.used_slots;
    }
    if (request.output_tokens > 0) {
      waste.allocated_slots_at_end += last.allocated_slots;
      waste.used_slots_at_end += last.used_slots;
      waste.max_wasted_slots_at_end =
          std::max(waste.max_wasted_slots_at_end, last.allocated_slots - last.used_slots);
    }
    ledger.finish(id);
  }
  return waste;
}

double ConcurrentWaste::waste_fraction() const {
  return mean_allocated_slots == 0
             ? 0.0
             : (mean_allocated_slots - mean_used_slots) / mean_allocated_slots;
}

double ConcurrentWaste::allocated_slots_per_live_request() const {
  return mean_live_requests == 0 ? 0.0 : mean_allocated_slots / mean_live_requests;
}

std::vector<ConcurrentWaste> simulate_concurrent(const std::vector<TraceRequest>& requests,
                                                 const std::vector<KvScheme>& schemes,
                                                 const ConcurrentOptions& options,
                                                 const std::function<void(double)>& progress) {
  if (!(options.seconds_per_token > 0) || !(options.tick_seconds > 0)) {
    fail("kv waste: seconds per token and tick must be > 0, got ", options.seconds_per_token,
         " and ", options.tick_seconds);
  }
  std::vector<std::unique_ptr<KvLedger>> ledgers;
  std::vector<ConcurrentWaste> results(schemes.size());
  for (size_t s = 0; s < schemes.size(); ++s) {
    const int64_t block_size = std::max<int64_t>(schemes[s].block_size, 1);
    ledgers.push_back(
        std::make_unique<KvLedger>(schemes[s], blocks_to_hold_all(requests, block_size)));
    results[s].scheme = schemes[s].name();
  }

  struct Live {
    size_t index;
    int64_t appended = 0;  ///< generated tokens whose slots are taken
    bool finished = false;
  };
  std::vector<Live> live;
  size_t next_arrival = 0;
  double next_progress = 60;
  for (int64_t tick = 0; next_arrival < requests.size() || !live.empty(); ++tick) {
    // Computed from the tick number, not summed, so rounding does not drift over an hour.
    const double now = static_cast<double>(tick) * options.tick_seconds;
    while (next_arrival < requests.size() && requests[next_arrival].arrival_seconds <= now) {
      const TraceRequest& request = requests[next_arrival];
      for (size_t s = 0; s < schemes.size(); ++s) {
        if (schemes[s].admits(request)) {
          ledgers[s]->start(static_cast<int64_t>(next_arrival), request.prompt_tokens);
        }
      }
      live.push_back({next_arrival});
      ++next_arrival;
    }
    // Bring every live request to where it is at `now`: token j (1..G) is appended at
    // arrival + (j - 1) * seconds_per_token, the request is freed at arrival + G *
    // seconds_per_token.
    for (Live& entry : live) {
      const TraceRequest& request = requests[entry.index];
      const double age = now - request.arrival_seconds;
      const int64_t due =
          std::min<int64_t>(request.output_tokens,
                            static_cast<int64_t>(std::floor(age / options.seconds_per_token)) + 1);
      const bool finished =
          age >= static_cast<double>(request.output_tokens) * options.seconds_per_token;
      const int64_t id = static_cast<int64_t>(entry.index);
      for (size_t s = 0; s < schemes.size(); ++s) {
        if (!schemes[s].admits(request)) continue;
        for (int64_t j = entry.appended; j < due; ++j) ledgers[s]->append_token(id);
        if (finished) ledgers[s]->finish(id);
      }
      entry.appended = due;
      entry.finished = finished;
    }
    live.erase(
        std::remove_if(live.begin(), live.end(), [](const Live& entry) { return entry.finished; }),
        live.end());

    for (size_t s = 0; s < schemes.size(); ++s) {
      results[s].samples.push_back(ledgers[s]->total());
      results[s].live_requests.push_back(ledgers[s]->live_requests());
    }
    if (progress && now >= next_progress) {
      progress(now);
      next_progress += 60;
    }
  }

  for (size_t s = 0; s < schemes.size(); ++s) {
    ConcurrentWaste& result = results[s];
    for (const TraceRequest& request : requests) {
      ++(schemes[s].admits(request) ? result.requests : result.rejected_requests);
    }
    double allocated = 0, used = 0, live_count = 0;
    for (size_t tick = 0; tick < result.samples.size(); ++tick) {
      const SlotSample& sample = result.samples[tick];
      allocated += static_cast<double>(sample.allocated_slots);
      used += static_cast<double>(sample.used_slots);
      live_count += static_cast<double>(result.live_requests[tick]);
      result.peak_allocated_slots = std::max(result.peak_allocated_slots, sample.allocated_slots);
      result.peak_used_slots = std::max(result.peak_used_slots, sample.used_slots);
      result.peak_live_requests = std::max(result.peak_live_requests, result.live_requests[tick]);
    }
    const double ticks = std::max<double>(static_cast<double>(result.samples.size()), 1);
    result.mean_allocated_slots = allocated / ticks;
    result.mean_used_slots = used / ticks;
    result.mean_live_requests = live_count / ticks;
  }
  return results;
}

}  // namespace servelab
