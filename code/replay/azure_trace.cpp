#include "replay/azure_trace.h"

#include <array>
#include <charconv>
#include <fstream>
#include <string_view>

#include "common/error.h"
#include "replay/text_fields.h"

namespace servelab {
namespace {

constexpr std::array<std::string_view, 3> kColumns = {"TIMESTAMP", "ContextTokens",
                                                      "GeneratedTokens"};
constexpr std::string_view kTimestampFormat = "YYYY-MM-DD HH:MM:SS.fffffff";

/// Exactly `digits` decimal digits at text[position...]; advances `position`.
bool take_digits(std::string_view text, size_t& position, size_t digits, int64_t& value) {
  if (position + digits > text.size()) return false;
  value = 0;
  for (size_t i = 0; i < digits; ++i) {
    const char c = text[position + i];
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  position += digits;
  return true;
}

bool take_char(std::string_view text, size_t& position, char expected) {
  if (position >= text.size() || text[position] != expected) return false;
  ++position;
  return true;
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's days_from_civil), so
/// that arrival gaps across midnight or month ends come out right without the C time zone calls.
int64_t days_from_civil(int64_t year, int64_t month, int64_t day) {
  year -= month <= 2 ? 1 : 0;
  const int64_t era = (year >= 0 ? year : year - 399) / 400;
  const int64_t year_of_era = year - era * 400;
  const int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

int64_t days_in_month(int64_t year, int64_t month) {
  static constexpr int64_t kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

/// A time as whole seconds since 1970-01-01 00:00:00 plus nanoseconds: integers (not a double of
/// seconds since 1970) keep the trace's 100 ns resolution until the difference is taken.
struct Instant {
  int64_t seconds = 0;
  int64_t nanoseconds = 0;  ///< 0 to 999,999,999
  bool operator<(const Instant& other) const {
    return seconds != other.seconds ? seconds < other.seconds : nanoseconds < other.nanoseconds;
  }
  double seconds_since(const Instant& start) const {
    return static_cast<double>(seconds - start.seconds) +
           static_cast<double>(nanoseconds - start.nanoseconds) * 1e-9;
  }
};

/// `YYYY-MM-DD HH:MM:SS[.f...]`; false if malformed.
bool parse_timestamp(std::string_view text, Instant& instant) {
  size_t position = 0;
  int64_t year, month, day, hour, minute, second;
  const bool fields_ok = take_digits(text, position, 4, year) && take_char(text, position, '-') &&
                         take_digits(text, position, 2, month) && take_char(text, position, '-') &&
                         take_digits(text, position, 2, day) && take_char(text, position, ' ') &&
                         take_digits(text, position, 2, hour) && take_char(text, position, ':') &&
                         take_digits(text, position, 2, minute) && take_char(text, position, ':') &&
                         take_digits(text, position, 2, second);
  if (!fields_ok) return false;
  if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 ||
      minute > 59 || second > 59) {
    return false;
  }
  int64_t fraction_nanoseconds = 0;
  if (position < text.size()) {
    if (!take_char(text, position, '.')) return false;
    const size_t digits = text.size() - position;
    if (digits == 0 || digits > 9) return false;
    int64_t fraction = 0;
    if (!take_digits(text, position, digits, fraction)) return false;
    for (size_t i = digits; i < 9; ++i) fraction *= 10;
    fraction_nanoseconds = fraction;
  }
  instant.seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
  instant.nanoseconds = fraction_nanoseconds;
  return true;
}

}  // namespace

std::vector<TraceRequest> load_azure_trace(const std::string& path, int64_t max_requests) {
  if (max_requests < 0) fail(path, ": max_requests must be >= 0 (0 reads all), got ", max_requests);
  CsvTraceReader reader(path, {kColumns.begin(), kColumns.end()},
                        "the header TIMESTAMP,ContextTokens,GeneratedTokens of an Azure LLM "
                        "inference trace, then one row per request",
                        "Download an Azure LLM inference trace from "
                        "https://github.com/Azure/AzurePublicDataset "
                        "(data/AzureLLMInferenceTrace_conv.csv)");
  std::vector<TraceRequest> requests;
  Instant first, previous;
  int64_t previous_line = 0;
  std::vector<std::string_view> fields;  // TIMESTAMP, ContextTokens, GeneratedTokens
  while (!(max_requests > 0 && static_cast<int64_t>(requests.size()) == max_requests) &&
         reader.next(fields)) {
    const int64_t line_number = reader.line_number();
    const std::string_view timestamp = fields[0];
    Instant instant;
    if (!parse_timestamp(timestamp, instant)) {
      fail(path, ":", line_number, ": TIMESTAMP '", timestamp, "' is not a valid time of the form ",
           kTimestampFormat);
    }
    TraceRequest request;
    const std::string_view prompt = fields[1];
    if (!parse_count(prompt, request.prompt_tokens) || request.prompt_tokens < 1) {
      fail(path, ":", line_number, ": ContextTokens '", prompt,
           "' is not a whole number of prompt tokens >= 1");
    }
    const std::string_view output = fields[2];
    if (!parse_count(output, request.output_tokens)) {
      fail(path, ":", line_number, ": GeneratedTokens '", output,
           "' is not a whole number of generated tokens >= 0");
    }
    if (requests.empty()) {
      first = instant;
    } else if (instant < previous) {
      fail(path, ":", line_number, ": TIMESTAMP ", timestamp, " is earlier than the row on line ",
           previous_line, "; the rows must be in time order");
    }
    previous = instant;
    previous_line = line_number;
    request.arrival_seconds = instant.seconds_since(first);
    requests.push_back(request);
  }
  return requests;
}

}  // namespace servelab
