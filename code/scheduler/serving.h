// The contract between a server's HTTP layer and its engine thread, shared by the static and the
// continuous batching servers. HTTP worker threads tokenize and validate a request, submit() it,
// then wait on the request's own output channel; the engine thread runs the model and sends each
// choice's new text as it is produced, then one finish event per choice. No sockets here and no
// model: the HTTP layer and the engines meet only through these types.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/channel.h"
#include "common/error.h"
#include "protocol/generation_config.h"

namespace servelab {

/// One event of a request's output, in order per choice.
struct OutputEvent {
  enum class Kind {
    kText,      ///< `text` is new output of choice `index` (never half a UTF-8 character)
    kFinished,  ///< choice `index` is done: `finish_reason`, `completion_tokens`
    kError,     ///< the request failed in the engine: `error`, `status`; nothing follows
  };
  Kind kind = Kind::kText;
  int index = 0;
  std::string text;
  std::string finish_reason;  ///< "stop", "length" or "abort"
  int64_t completion_tokens = 0;
  std::string error;
  int status = 500;  ///< for kError: the HTTP status the handler should answer with
};

using OutputChannel = Channel<OutputEvent>;

/// The kError event that ends a request with `message` and HTTP `status`.
inline OutputEvent error_event(std::string message, int status) {
  OutputEvent event;
  event.kind = OutputEvent::Kind::kError;
  event.error = std::move(message);
  event.status = status;
  return event;
}

/// What both engines answer to a request they no longer take because they are stopping (503).
inline OutputEvent shutting_down_event() {
  return error_event("the server is shutting down", 503);
}

/// What both engines answer to a request over their bound on waiting requests (429).
inline OutputEvent overloaded_event(int64_t max_waiting) {
  return error_event(str_cat("the server is overloaded: ", max_waiting, " requests already wait"),
                     429);
}

/// Both engines' refusal of a prompt that leaves no room in the model's context.
inline std::string prompt_too_long(int64_t context, int64_t prompt_length) {
  return str_cat("This model's maximum context length is ", context,
                 " tokens; the prompt alone has ", prompt_length);
}

/// A validated, tokenized request handed to an engine.
struct ServingRequest {
  int64_t id = 0;
  std::vector<int32_t> prompt_tokens;  ///< BOS included as the tokenizer adds it
  GenerationConfig config;
  std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();
  /// Where the engine sends events. The handler cancels it when its client leaves: the engine
  /// then drops the request (and frees its memory) within one step.
  std::shared_ptr<OutputChannel> output = std::make_shared<OutputChannel>();
};

/// What an engine reports for /metrics and admission.
struct EngineGauges {
  int64_t running = 0;  ///< requests in the batch being run
  int64_t waiting = 0;  ///< requests queued
  int64_t swapped = 0;  ///< requests preempted to the CPU pool (continuous batching)
  double kv_usage = 0;  ///< fraction of KV memory in use
  int64_t kv_blocks_total = 0, kv_blocks_free = 0;    ///< GPU (attention's) pool, paged engines
  int64_t cpu_blocks_total = 0, cpu_blocks_free = 0;  ///< CPU swap pool, paged engines
  /// Requests preempted since the engine started, by swap and by recompute (cumulative).
  int64_t preemptions_swap = 0, preemptions_recompute = 0;
};

/// The engine side of a server: one thread that runs the scheduler and the model.
class ServingEngine {
 public:
  virtual ~ServingEngine() = default;
  /// Starts the engine thread.
  virtual void start() = 0;
  /// Queues a request; thread-safe, returns at once (never waits for the model).
  virtual void submit(ServingRequest request) = 0;
  /// Stops taking work; requests still running get up to `grace` to finish, then are aborted
  /// (finish_reason "abort"); waiting ones are answered with an error (503). Joins the thread.
  virtual void stop(std::chrono::milliseconds grace) = 0;
  virtual EngineGauges gauges() const = 0;
  /// The batching strategy, "static" or "continuous" (reported by /health).
  virtual std::string batching() const = 0;
};

}  // namespace servelab
