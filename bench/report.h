// A scenario's result, held once and rendered twice: as the text report people read and as the
// JSON document scripts read (--json). Every value is set once, under its JSON key, together with
// the text that shows it; text lines and table columns name the values they show. The text can
// only show what the report holds, so the text and the JSON cannot disagree.
#ifndef KILN_BENCH_REPORT_H_
#define KILN_BENCH_REPORT_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace kiln::bench {

// One value of a report: what its JSON key holds and what the text shows for it. The functions
// below make both forms from one C++ value.
struct ReportValue {
  nlohmann::ordered_json json;
  std::string text;
  bool in_json = true;  // false: the text's alone (a word or a unit that has no JSON key)
};

// A number: JSON rounded to 3 decimals (RoundToThousandths: ms to the microsecond), text by
// `format` (one double conversion, e.g. "%.2f" or "%.2fx").
ReportValue Number(double value, const absl::FormatSpec<double>& format = "%.2f");
// The same, its text in another unit: `value` x `text_scale` (0.001: ms shown as seconds).
ReportValue ScaledNumber(double value, double text_scale,
                         const absl::FormatSpec<double>& format = "%.2f");
// Number(*value, format), or JSON null and the text `absent` when there is none.
ReportValue NumberOr(std::optional<double> value, const absl::FormatSpec<double>& format,
                     std::string absent = "-");
ReportValue Integer(int64_t value);
ReportValue String(std::string value);  // the same in both
// JSON true or false; the text `yes` or `no`.
ReportValue Bool(bool value, std::string yes = "true", std::string no = "false");
// Name -> count (outcomes, statuses): JSON {NAME: n} ({} when empty); text "NAME n, NAME n",
// or `none` when empty.
ReportValue Counts(const std::map<std::string, int64_t>& counts, std::string none = "none");
// JSON null; the text `text`.
ReportValue Null(std::string text = "-");
// Shown in the text only.
ReportValue TextOnly(std::string text);
// Anything else (a list, an object): its JSON and its text, both made by the caller from one
// value.
ReportValue JsonWithText(nlohmann::ordered_json json, std::string text);

class ReportTable;

// A report: values under JSON keys, and the text lines and tables that show them.
//
// Set() puts a value under its key ("p99_ratio", or "health.checks" inside the object "health");
// the JSON document holds the values in the order they were first set. The text is the Line()s
// and Table()s in the order they were added: a line names the values it shows ("p99 after /
// before: {p99_ratio}x"), rendered when the text is asked for, so a line may come before the
// values it shows are set. A Table is both an array of row objects in the JSON and an aligned
// block in the text. A value that no line or column shows is the JSON's alone.
//
// Ownership: a plain value (rows of a table are Reports too). Not thread-safe while it is built;
// once built, its const methods may be called from any thread.
class Report {
 public:
  Report() = default;

  // Sets `key` to `value` (a second Set of the same key replaces the first, keeping its place).
  Report& Set(absl::string_view key, ReportValue value);

  // A line of text (without its newline). "{key}" is the text of the value at `key`, "{key:8}" the
  // same right-aligned in 8 columns, "{key:-8}" left-aligned; "{{" and "}}" are braces. A key that
  // was never set shows as "{key?}" (a bug the scenario's tests catch).
  Report& Line(std::string line);

  // `table`: the JSON array of its rows' objects under `key`, and its text block here.
  Report& Table(absl::string_view key, ReportTable table);

  // The text of the value at `key`; "" when it was not set.
  std::string TextOf(absl::string_view key) const;
  // Whether `key` was set.
  bool Has(absl::string_view key) const;

  // Every line and table, each line ending in a newline.
  std::string Text() const;
  // The JSON document, indented by 2, with a final newline (what --json files hold).
  std::string Json() const;
  const nlohmann::ordered_json& json() const { return json_; }

 private:
  // One piece of the text: a line, or a table.
  struct Block {
    std::string line;
    std::shared_ptr<const ReportTable> table;  // null for a line
  };

  std::string Render(absl::string_view line) const;

  nlohmann::ordered_json json_ = nlohmann::ordered_json::object();
  std::map<std::string, std::string, std::less<>> texts_;
  std::vector<Block> blocks_;
};

// A column of a table's text: the value at `key` of every row, under `header`.
struct ReportColumn {
  std::string key;
  std::string header;
  bool left = false;  // aligned left (names, words) rather than right (numbers)
};

// Rows of values. In the JSON an array of one object per row; in the text a header line and one
// line per row, indented by two spaces, each column as wide as its widest cell and separated by
// two spaces (the last column is not padded). A table without columns is the JSON's alone.
//
// Ownership: a plain value. Not thread-safe while it is built.
class ReportTable {
 public:
  explicit ReportTable(std::vector<ReportColumn> columns = {});

  // A new row at the end; Set its values. The reference stays valid while the table lives.
  Report& AddRow();
  const std::deque<Report>& rows() const { return rows_; }

  std::string Text() const;  // "" without columns
  nlohmann::ordered_json Json() const;

 private:
  std::vector<ReportColumn> columns_;
  std::deque<Report> rows_;
};

}  // namespace kiln::bench

#endif  // KILN_BENCH_REPORT_H_
