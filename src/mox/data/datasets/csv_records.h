#pragma once
// The RFC 4180 reader under load_csv, shared with the other readers of delimited text
// (mox predict's table inputs): records of fields, the numbers in them.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mox::data {

struct CsvRecord {
  int64_t line;  // 1-based line where the record starts (a quoted field may span lines)
  std::vector<std::string> fields;
};

// Splits the text into records of fields: quoted fields may hold delimiters, newlines and
// doubled quotes; CRLF, LF or a lone CR end a line; a UTF-8 BOM is skipped; blank (or
// whitespace-only) lines yield no record. Errors name "path:line".
std::vector<CsvRecord> parse_csv_records(std::string_view text, char delim, const std::string& path);

// Spaces, tabs and CRs stripped from both ends.
std::string_view csv_trim(std::string_view s);
// The whole trimmed field as a number (a leading '+' allowed); false otherwise.
bool parse_csv_float(std::string_view s, float* out);
bool parse_csv_int(std::string_view s, int64_t* out);

}  // namespace mox::data
