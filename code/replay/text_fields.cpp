// See text_fields.h.
#include "replay/text_fields.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

#include "common/error.h"

namespace servelab {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (true) {
    const size_t comma = line.find(',', start);
    fields.push_back(
        trim(line.substr(start, comma == std::string_view::npos ? comma : comma - start)));
    if (comma == std::string_view::npos) return fields;
    start = comma + 1;
  }
}

bool parse_count(std::string_view text, int64_t& value) {
  if (text.empty() || text.front() < '0' || text.front() > '9') return false;
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  return error == std::errc() && stop == end;
}

bool parse_number(std::string_view text, double& value) {
  if (text.empty()) return false;
  // std::from_chars for double is not in GCC 10's library everywhere; strtod on a copy is.
  const std::string copy(text);
  char* end = nullptr;
  value = std::strtod(copy.c_str(), &end);
  return end == copy.c_str() + copy.size() && std::isfinite(value);
}

CsvTraceReader::CsvTraceReader(const std::string& path, std::vector<std::string> columns,
                               const std::string& expected_header, const std::string& where_to_get)
    : path_(path), file_(path, std::ios::binary) {
  if (!file_) fail(path, ": cannot open the trace file. ", where_to_get);
  if (!next_line()) fail(path, ": the file is empty; expected ", expected_header);
  const std::vector<std::string_view> header = split_fields(text_);
  for (const std::string& column : columns) {
    size_t found = header.size();
    for (size_t i = 0; i < header.size(); ++i)
      if (header[i] == column) found = i;
    if (found == header.size())
      fail(path, ":", line_number_, ": the header '", text_, "' has no column '", column,
           "' (expected ", expected_header, ")");
    column_index_.push_back(found);
  }
  num_columns_ = header.size();
}

bool CsvTraceReader::next_line() {
  while (std::getline(file_, line_)) {
    ++line_number_;
    text_ = line_;
    if (!text_.empty() && text_.back() == '\r') text_.remove_suffix(1);
    if (line_number_ == 1 && text_.substr(0, 3) == "\xEF\xBB\xBF") text_.remove_prefix(3);
    if (!trim(text_).empty()) return true;
  }
  if (file_.bad()) fail(path_, ": read error after line ", line_number_);
  return false;
}

bool CsvTraceReader::next(std::vector<std::string_view>& fields) {
  if (!next_line()) return false;
  const std::vector<std::string_view> all = split_fields(text_);
  if (all.size() != num_columns_)
    fail(path_, ":", line_number_, ": expected ", num_columns_,
         " comma-separated fields as in the header, found ", all.size(), " in '", text_, "'");
  fields.clear();
  for (size_t index : column_index_) fields.push_back(all[index]);
  return true;
}

}  // namespace servelab
