// The packing policy of the static-batching server (see static_packer.h).
#include "scheduler/static_packer.h"

#include <algorithm>
#include <utility>

namespace servelab {

int64_t workload_of(const GenerationConfig& config) {
  return std::max<int64_t>(std::max(config.num_return_sequences, config.num_beams), 1);
}

std::optional<Package> pack(std::deque<WaitingRequest>& queue, int64_t max_workload) {
  Package package;
  // BEGIN LAB(lab06-pack)
  if (queue.empty()) return std::nullopt;
  // The oldest request always goes in, even when it alone is above max_workload: a head that
  // never fits would otherwise block the queue forever.
  package.config = queue.front().config;
  package.requests.push_back(queue.front().id);
  package.workload = queue.front().workload;
  // The rest: first fit in arrival order. A matching request that does not fit stays, and a later,
  // smaller one may still join. The requests not taken are moved to `remaining` in the order they
  // are met, so the queue keeps its FIFO order.
  std::deque<WaitingRequest> remaining;
  for (size_t index = 1; index < queue.size(); ++index) {
    WaitingRequest& request = queue[index];
    if (request.config == package.config && package.workload + request.workload <= max_workload) {
      package.requests.push_back(request.id);
      package.workload += request.workload;
    } else {
      remaining.push_back(std::move(request));
    }
  }
  queue = std::move(remaining);
  // END LAB
  return package;
}

bool should_pack_now(bool engine_idle, double now, double last_pack, double packaging_interval,
                     bool queue_empty) {
  if (queue_empty) return false;
  return engine_idle || now - last_pack >= packaging_interval;
}

}  // namespace servelab
