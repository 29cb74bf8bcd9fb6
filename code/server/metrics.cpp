#include "server/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/error.h"

namespace servelab {
namespace {

const char* kind_name(int kind) {
  static const char* names[] = {"counter", "gauge", "histogram"};
  return names[kind];
}

// Label values escape backslash, double quote and newline, as the format requires.
std::string escape_label_value(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// "a=\"x\",b=\"y\"" without braces; empty for no labels.
std::string label_text(const MetricLabels& labels) {
  std::string out;
  for (const auto& [key, value] : labels) {
    if (!out.empty()) out += ",";
    out += key + "=\"" + escape_label_value(value) + "\"";
  }
  return out;
}

std::string format_number(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (std::isnan(value)) return "NaN";
  // The shortest text that reads back as the same double: "0.1", not "0.10000000000000001".
  for (int precision = 1; precision < 17; ++precision) {
    char text[40];
    std::snprintf(text, sizeof(text), "%.*g", precision, value);
    if (std::strtod(text, nullptr) == value) return text;
  }
  char text[40];
  std::snprintf(text, sizeof(text), "%.17g", value);
  return text;
}

std::string braces(const std::string& labels) {
  return labels.empty() ? "" : "{" + labels + "}";
}

}  // namespace

void MetricsRegistry::add_counter(const std::string& name, const std::string& help) {
  add(name, Kind::kCounter, help, {});
}
void MetricsRegistry::add_gauge(const std::string& name, const std::string& help) {
  add(name, Kind::kGauge, help, {});
}
void MetricsRegistry::add_histogram(const std::string& name, const std::string& help,
                                    std::vector<double> upper_bounds) {
  for (size_t i = 1; i < upper_bounds.size(); ++i) {
    if (!(upper_bounds[i] > upper_bounds[i - 1])) {
      fail(str_cat("metric '", name, "': histogram bucket bounds must increase strictly"));
    }
  }
  add(name, Kind::kHistogram, help, std::move(upper_bounds));
}

void MetricsRegistry::add(const std::string& name, Kind kind, const std::string& help,
                          std::vector<double> upper_bounds) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (families_.count(name) != 0) fail(str_cat("metric '", name, "' is declared twice"));
  Family family;
  family.kind = kind;
  family.help = help;
  family.upper_bounds = std::move(upper_bounds);
  families_.emplace(name, std::move(family));
}

MetricsRegistry::Series& MetricsRegistry::series_locked(const std::string& name, Kind kind,
                                                        const MetricLabels& labels) {
  auto found = families_.find(name);
  if (found == families_.end()) fail(str_cat("metric '", name, "' was never declared"));
  Family& family = found->second;
  if (family.kind != kind) {
    fail(str_cat("metric '", name, "' is a ", kind_name(static_cast<int>(family.kind)),
                 ", used as a ", kind_name(static_cast<int>(kind))));
  }
  auto [entry, inserted] = family.series.try_emplace(label_text(labels));
  if (inserted) {
    entry->second.first = labels;
    entry->second.second.bucket_counts.assign(family.upper_bounds.size(), 0);
  }
  return entry->second.second;
}

const MetricsRegistry::Series* MetricsRegistry::find_locked(const std::string& name,
                                                            const MetricLabels& labels) const {
  auto family = families_.find(name);
  if (family == families_.end()) fail(str_cat("metric '", name, "' was never declared"));
  auto series = family->second.series.find(label_text(labels));
  return series == family->second.series.end() ? nullptr : &series->second.second;
}

void MetricsRegistry::increment(const std::string& name, const MetricLabels& labels,
                                double amount) {
  if (!(amount >= 0)) fail(str_cat("metric '", name, "': a counter cannot go down"));
  std::lock_guard<std::mutex> lock(mutex_);
  series_locked(name, Kind::kCounter, labels).value += amount;
}

void MetricsRegistry::set_gauge(const std::string& name, double value, const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  series_locked(name, Kind::kGauge, labels).value = value;
}

void MetricsRegistry::set_counter(const std::string& name, double total,
                                  const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  Series& series = series_locked(name, Kind::kCounter, labels);
  if (total < series.value)
    fail("metrics: counter ", name, " would go down from ", series.value, " to ", total);
  series.value = total;
}

void MetricsRegistry::observe(const std::string& name, double value, const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  Series& series = series_locked(name, Kind::kHistogram, labels);
  const std::vector<double>& bounds = families_.at(name).upper_bounds;
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (value <= bounds[i]) {
      ++series.bucket_counts[i];
      break;
    }
  }
  ++series.count;
  series.sum += value;
}

double MetricsRegistry::value(const std::string& name, const MetricLabels& labels) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const Series* series = find_locked(name, labels);
  return series == nullptr ? 0.0 : series->value;
}

uint64_t MetricsRegistry::observation_count(const std::string& name,
                                            const MetricLabels& labels) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const Series* series = find_locked(name, labels);
  return series == nullptr ? 0 : series->count;
}

std::string MetricsRegistry::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  for (const auto& [name, family] : families_) {
    out += "# HELP " + name + " " + family.help + "\n";
    out += "# TYPE " + name + " " + kind_name(static_cast<int>(family.kind)) + "\n";
    // A family without labels shows 0 before its first use, so scrapers see it from the start.
    std::map<std::string, std::pair<MetricLabels, Series>> zero;
    if (family.series.empty()) {
      zero[""].second.bucket_counts.assign(family.upper_bounds.size(), 0);
    }
    for (const auto& [labels, entry] : family.series.empty() ? zero : family.series) {
      const Series& series = entry.second;
      if (family.kind != Kind::kHistogram) {
        out += name + braces(labels) + " " + format_number(series.value) + "\n";
        continue;
      }
      const std::string separator = labels.empty() ? "" : ",";
      uint64_t cumulative = 0;
      for (size_t i = 0; i < family.upper_bounds.size(); ++i) {
        cumulative += series.bucket_counts[i];
        out += name + "_bucket{" + labels + separator + "le=\"" +
               format_number(family.upper_bounds[i]) + "\"} " + std::to_string(cumulative) + "\n";
      }
      out += name + "_bucket{" + labels + separator + "le=\"+Inf\"} " +
             std::to_string(series.count) + "\n";
      out += name + "_sum" + braces(labels) + " " + format_number(series.sum) + "\n";
      out += name + "_count" + braces(labels) + " " + std::to_string(series.count) + "\n";
    }
  }
  return out;
}

}  // namespace servelab
