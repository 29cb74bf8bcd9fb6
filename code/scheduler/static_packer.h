// The packing policy of the static-batching server: which waiting requests go into the next
// package (a batch of requests with the identical generation config, run to completion), and when
// to pack. Policy only: it never runs the model, owns threads, talks HTTP or touches a device.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "protocol/generation_config.h"

namespace servelab {

/// The caller's name for a request (the same alias as block_manager.h's).
using RequestId = int64_t;

/// The number of sequences a request occupies in a batch: each returned sequence and each beam is
/// one row of the padded batch, and beams are searched for every returned sequence together (at
/// most num_beams rows), so a request takes max(num_return_sequences, num_beams) rows.
/// This is the unit of `package_max_workload`.
int64_t workload_of(const GenerationConfig& config);

/// A request waiting in the static batcher's FIFO queue.
struct WaitingRequest {
  RequestId id = 0;
  GenerationConfig config;       ///< packed only with requests whose config is == to it
  int64_t workload = 1;          ///< workload_of(config): sequences it occupies, >= 1
  double arrival_seconds = 0.0;  ///< when it entered the queue (the queue is in arrival order)
};

/// One package: requests with one identical config that run together to completion.
struct Package {
  GenerationConfig config;          ///< the config every request in it shares
  std::vector<RequestId> requests;  ///< in arrival order; never empty
  int64_t workload = 0;             ///< the sum of the requests' workloads
};

/// Takes the next package out of `queue` (oldest first, in arrival order).
///
/// The oldest request is always taken, even when its workload alone is above `max_workload`:
/// otherwise it would stay at the head and wait forever. The server refuses at admission any
/// request above `package_max_workload`, so this does not happen there. Then the rest of the
/// queue is scanned in arrival order, and every request whose config is identical (==) to the
/// oldest one's and whose workload still fits under `max_workload` joins (first fit: a matching
/// request that does not fit is skipped and stays; a later, smaller one may still join).
/// The chosen requests are removed from `queue`; the others keep their order.
///
/// @param queue        waiting requests, oldest first; the chosen ones are removed
/// @param max_workload the package's limit in sequences (package_max_workload); below the
///                     head's own workload, the package is the head alone
/// @return nullopt when the queue is empty; otherwise the package, its requests in arrival order
std::optional<Package> pack(std::deque<WaitingRequest>& queue, int64_t max_workload);

/// The static batcher's timing rule: pack every `packaging_interval` seconds, or at once when the
/// engine is idle and work is waiting (no reason to leave the engine idle until the tick).
/// Never when the queue is empty. While the engine is busy a package is not started anyway (the
/// running one goes to completion first); packing on the tick only decides what runs next.
///
/// @param engine_idle        no package is running
/// @param now                the current time, seconds
/// @param last_pack          when the last package was made, seconds (same clock as `now`)
/// @param packaging_interval seconds between packings, >= 0
/// @param queue_empty        no request is waiting
bool should_pack_now(bool engine_idle, double now, double last_pack, double packaging_interval,
                     bool queue_empty);

}  // namespace servelab
