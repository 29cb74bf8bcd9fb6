// A small thread-safe queue between one producer thread and one consumer thread: the engine
// thread sends a request's output events, the HTTP handler that owns the request waits for them.
// Either side can close it: the producer when the request is over, the consumer when its client
// left (the producer sees cancelled() and stops working for nobody).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>

namespace servelab {

template <typename T>
class Channel {
 public:
  /// Appends an item and wakes the consumer. Items sent after cancel() are dropped.
  void send(T item) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cancelled_) return;
      items_.push_back(std::move(item));
    }
    ready_.notify_one();
  }

  /// The next item, waiting at most `timeout`; nullopt when none came in time (or cancelled).
  std::optional<T> receive(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait_for(lock, timeout, [&] { return !items_.empty() || cancelled_; });
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    return item;
  }

  /// The consumer gives up: pending and future items are dropped, cancelled() becomes true.
  void cancel() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      cancelled_ = true;
      items_.clear();
    }
    ready_.notify_all();
  }

  bool cancelled() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cancelled_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<T> items_;
  bool cancelled_ = false;
};

}  // namespace servelab
