// Small text helpers of the trace loaders: trimming, splitting a CSV line (no quoting: the
// published traces have none), and strict number parsing.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace servelab {

/// `text` without leading and trailing spaces and tabs.
std::string_view trim(std::string_view text);
/// The comma-separated fields of a line, each trimmed.
std::vector<std::string_view> split_fields(std::string_view line);
/// Parses all of `text` as a non-negative decimal integer; false if anything else is there.
bool parse_count(std::string_view text, int64_t& value);
/// Parses all of `text` as a finite decimal number (as "12.5" or "3"); false otherwise.
bool parse_number(std::string_view text, double& value);

}  // namespace servelab
