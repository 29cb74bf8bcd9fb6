// A SenderEnvironment on a virtual clock, for grading a sending policy (open or closed loop)
// exactly: time moves only when the sender sleeps or waits, and each request, once launched, is
// answered a scripted number of seconds later. No threads, no sockets, no real time.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "replay/replay_driver.h"

namespace servelab::testing {

class VirtualSenderEnvironment final : public SenderEnvironment {
 public:
  /// A launch as the environment saw it.
  struct Launch {
    size_t index = 0;
    double time = 0;        ///< virtual seconds since the start
    int64_t in_flight = 0;  ///< requests in flight once this one was launched (itself included)
  };

  /// Request i is answered `answer_seconds[i]` after its launch.
  explicit VirtualSenderEnvironment(std::vector<double> answer_seconds)
      : answer_seconds_(std::move(answer_seconds)),
        answered_at_(answer_seconds_.size(), std::numeric_limits<double>::infinity()) {}

  double now() override { return now_; }

  void sleep_until(double seconds) override { now_ = std::max(now_, seconds); }

  /// Moves the clock to the next answer until fewer than `limit` requests are in flight.
  void wait_until_in_flight_below(int64_t limit) override {
    while (in_flight() >= limit) {
      double next_answer = std::numeric_limits<double>::infinity();
      for (double time : answered_at_)
        if (time > now_) next_answer = std::min(next_answer, time);
      if (next_answer == std::numeric_limits<double>::infinity()) {
        ADD_FAILURE() << "wait_until_in_flight_below(" << limit << ") with " << in_flight()
                      << " in flight would wait forever";
        return;
      }
      now_ = next_answer;
    }
  }

  void launch(size_t index) override {
    if (index >= answer_seconds_.size()) {
      ADD_FAILURE() << "launch(" << index << ") of a trace of " << answer_seconds_.size();
      return;
    }
    if (answered_at_[index] != std::numeric_limits<double>::infinity())
      ADD_FAILURE() << "request " << index << " launched twice";
    launches_.push_back({index, now_, in_flight() + 1});
    answered_at_[index] = now_ + answer_seconds_[index];
  }

  /// Requests launched whose answer has not come by now (a request answered at t is out of
  /// flight from t on).
  int64_t in_flight() const {
    int64_t count = 0;
    for (size_t i = 0; i < answered_at_.size(); ++i)
      if (answered_at_[i] != std::numeric_limits<double>::infinity() && answered_at_[i] > now_)
        count += 1;
    return count;
  }

  const std::vector<Launch>& launches() const { return launches_; }

  /// The launch times, in launch order.
  std::vector<double> launch_times() const {
    std::vector<double> times;
    for (const Launch& launch : launches_) times.push_back(launch.time);
    return times;
  }

  /// The indexes, in launch order.
  std::vector<size_t> launch_order() const {
    std::vector<size_t> order;
    for (const Launch& launch : launches_) order.push_back(launch.index);
    return order;
  }

  /// The most requests in flight at any launch.
  int64_t most_in_flight() const {
    int64_t most = 0;
    for (const Launch& launch : launches_) most = std::max(most, launch.in_flight);
    return most;
  }

 private:
  std::vector<double> answer_seconds_;
  std::vector<double> answered_at_;  // infinity: not launched
  std::vector<Launch> launches_;
  double now_ = 0;
};

}  // namespace servelab::testing
