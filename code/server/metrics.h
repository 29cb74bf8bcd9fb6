// A tiny Prometheus registry for the server's /metrics: counters, gauges and fixed-bucket
// histograms, each optionally split by labels, rendered in the text exposition format (0.0.4).
// Thread-safe; it never reads the engine or a socket itself: the server feeds it.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace servelab {

/// Label pairs of one series, e.g. {{"finish_reason", "stop"}}. Order is kept as given.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

/// Counters, gauges and histograms by name. Every name is declared once (add_counter/add_gauge/
/// add_histogram) before it is used; using an undeclared name, or a name as the wrong kind, throws
/// servelab::Error (a bug in the server, not a user error).
class MetricsRegistry {
 public:
  void add_counter(const std::string& name, const std::string& help);
  void add_gauge(const std::string& name, const std::string& help);
  /// @param upper_bounds the finite bucket bounds, strictly increasing; "+Inf" is added.
  void add_histogram(const std::string& name, const std::string& help,
                     std::vector<double> upper_bounds);

  /// Adds `amount` (>= 0) to a counter series.
  void increment(const std::string& name, const MetricLabels& labels = {}, double amount = 1.0);
  void set_gauge(const std::string& name, double value, const MetricLabels& labels = {});
  /// Sets a counter series to a total kept elsewhere (an engine's cumulative count, copied at
  /// scrape time); throws when `total` is below the series' value (a counter never goes down).
  void set_counter(const std::string& name, double total, const MetricLabels& labels = {});
  void observe(const std::string& name, double value, const MetricLabels& labels = {});

  /// The current value of a counter or gauge series (0 when never touched); for tests.
  double value(const std::string& name, const MetricLabels& labels = {}) const;
  /// How many observations a histogram series holds; for tests.
  uint64_t observation_count(const std::string& name, const MetricLabels& labels = {}) const;

  /// Prometheus text format: "# HELP", "# TYPE", then one line per series (histograms as
  /// cumulative `_bucket{le="..."}`, `_sum`, `_count`). Families in name order.
  std::string render() const;

 private:
  enum class Kind { kCounter, kGauge, kHistogram };
  struct Series {
    double value = 0;                     // counter / gauge
    std::vector<uint64_t> bucket_counts;  // histogram: per finite bucket (not cumulative)
    uint64_t count = 0;
    double sum = 0;
  };
  struct Family {
    Kind kind = Kind::kCounter;
    std::string help;
    std::vector<double> upper_bounds;
    std::map<std::string, std::pair<MetricLabels, Series>> series;  // by rendered label text
  };

  void add(const std::string& name, Kind kind, const std::string& help,
           std::vector<double> upper_bounds);
  Series& series_locked(const std::string& name, Kind kind, const MetricLabels& labels);
  const Series* find_locked(const std::string& name, const MetricLabels& labels) const;

  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;
};

}  // namespace servelab
