// Small text helpers of the trace loaders: trimming, splitting a CSV line (no quoting: the
// published traces have none), strict number parsing, and a reader of CSV traces that finds its
// columns by name. They read text only: what a row means is the loader's business.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
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

/// Reads a CSV trace a row at a time: drops CR line ends, a UTF-8 byte order mark (as spreadsheet
/// programs write) and blank lines; finds the wanted columns by name in the header line (other
/// columns are ignored, in any order); checks that every row has the header's number of fields.
/// Its errors (servelab::Error) name the file and the line.
class CsvTraceReader {
 public:
  /// Opens `path` and reads its header. `where_to_get` ends the error when the file cannot be
  /// opened; `expected_header` ("the header A,B,C") is quoted when the header lacks a column or the
  /// file is empty.
  CsvTraceReader(const std::string& path, std::vector<std::string> columns,
                 const std::string& expected_header, const std::string& where_to_get);

  /// The next row's wanted fields, in the order of `columns`; false at the end of the file.
  bool next(std::vector<std::string_view>& fields);

  const std::string& path() const { return path_; }
  /// The line of the row `next` returned last (1-based).
  int64_t line_number() const { return line_number_; }

 private:
  /// The next non-blank line, normalised, into `text_`; false at the end of the file.
  bool next_line();

  std::string path_;
  std::ifstream file_;
  std::string line_;
  std::string_view text_;
  int64_t line_number_ = 0;
  std::vector<size_t> column_index_;
  size_t num_columns_ = 0;
};

}  // namespace servelab
