#include "bench/report.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/latency_stats.h"

namespace kiln::bench {

ReportValue Number(double value, const absl::FormatSpec<double>& format) {
  return {RoundToThousandths(value), absl::StrFormat(format, value)};
}

ReportValue ScaledNumber(double value, double text_scale, const absl::FormatSpec<double>& format) {
  return {RoundToThousandths(value), absl::StrFormat(format, value * text_scale)};
}

ReportValue NumberOr(std::optional<double> value, const absl::FormatSpec<double>& format,
                     std::string absent) {
  return value ? Number(*value, format) : Null(std::move(absent));
}

ReportValue Integer(int64_t value) { return {value, absl::StrCat(value)}; }

ReportValue String(std::string value) { return {value, value}; }

ReportValue Bool(bool value, std::string yes, std::string no) {
  return {value, value ? std::move(yes) : std::move(no)};
}

ReportValue Counts(const std::map<std::string, int64_t>& counts, std::string none) {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  std::vector<std::string> parts;
  for (const auto& [name, count] : counts) {
    json[name] = count;
    parts.push_back(absl::StrCat(name, " ", count));
  }
  return {std::move(json), parts.empty() ? std::move(none) : absl::StrJoin(parts, ", ")};
}

ReportValue Null(std::string text) { return {nullptr, std::move(text)}; }

ReportValue TextOnly(std::string text) { return {nullptr, std::move(text), /*in_json=*/false}; }

ReportValue JsonWithText(nlohmann::ordered_json json, std::string text) {
  return {std::move(json), std::move(text)};
}

// --- Report ------------------------------------------------------------------------------------

Report& Report::Set(absl::string_view key, ReportValue value) {
  texts_[std::string(key)] = std::move(value.text);
  if (!value.in_json) return *this;
  nlohmann::ordered_json* node = &json_;
  const std::vector<std::string> path = absl::StrSplit(key, '.');
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    nlohmann::ordered_json& child = (*node)[path[i]];
    if (!child.is_object()) child = nlohmann::ordered_json::object();
    node = &child;
  }
  (*node)[path.back()] = std::move(value.json);
  return *this;
}

Report& Report::Line(std::string line) {
  blocks_.push_back({std::move(line), nullptr});
  return *this;
}

Report& Report::Table(absl::string_view key, ReportTable table) {
  Set(key, {table.Json(), ""});
  blocks_.push_back({"", std::make_shared<const ReportTable>(std::move(table))});
  return *this;
}

std::string Report::TextOf(absl::string_view key) const {
  const auto found = texts_.find(key);
  return found == texts_.end() ? "" : found->second;
}

bool Report::Has(absl::string_view key) const { return texts_.find(key) != texts_.end(); }

std::string Report::Render(absl::string_view line) const {
  std::string out;
  size_t i = 0;
  while (i < line.size()) {
    const char c = line[i];
    if ((c == '{' || c == '}') && i + 1 < line.size() && line[i + 1] == c) {
      out.push_back(c);
      i += 2;
      continue;
    }
    const size_t close = c == '{' ? line.find('}', i) : absl::string_view::npos;
    if (close == absl::string_view::npos) {
      out.push_back(c);
      ++i;
      continue;
    }
    const absl::string_view field = line.substr(i + 1, close - i - 1);
    i = close + 1;
    const size_t colon = field.find(':');
    const absl::string_view key = field.substr(0, colon);
    int width = 0;
    if (colon != absl::string_view::npos && !absl::SimpleAtoi(field.substr(colon + 1), &width)) {
      width = 0;
    }
    const auto found = texts_.find(key);
    const std::string text = found == texts_.end() ? absl::StrCat("{", key, "?}") : found->second;
    const size_t pad = static_cast<size_t>(std::abs(width));
    if (width > 0 && text.size() < pad) out.append(pad - text.size(), ' ');
    out += text;
    if (width < 0 && text.size() < pad) out.append(pad - text.size(), ' ');
  }
  return out;
}

std::string Report::Text() const {
  std::string out;
  for (const Block& block : blocks_) {
    out += block.table != nullptr ? block.table->Text() : absl::StrCat(Render(block.line), "\n");
  }
  return out;
}

std::string Report::Json() const { return json_.dump(2) + "\n"; }

// --- ReportTable -------------------------------------------------------------------------------

ReportTable::ReportTable(std::vector<ReportColumn> columns) : columns_(std::move(columns)) {}

Report& ReportTable::AddRow() { return rows_.emplace_back(); }

std::string ReportTable::Text() const {
  if (columns_.empty()) return "";
  std::vector<std::vector<std::string>> lines(1 + rows_.size());
  std::vector<size_t> widths(columns_.size());
  for (size_t c = 0; c < columns_.size(); ++c) {
    lines[0].push_back(columns_[c].header);
    for (size_t r = 0; r < rows_.size(); ++r)
      lines[1 + r].push_back(rows_[r].TextOf(columns_[c].key));
    for (const std::vector<std::string>& cells : lines) {
      widths[c] = std::max(widths[c], cells[c].size());
    }
  }
  std::string out;
  for (const std::vector<std::string>& cells : lines) {
    std::string line = " ";
    for (size_t c = 0; c < cells.size(); ++c) {
      const size_t pad = widths[c] - cells[c].size();
      const bool last = c + 1 == cells.size();
      line += " ";
      if (!columns_[c].left) line.append(pad, ' ');
      line += cells[c];
      if (columns_[c].left && !last) line.append(pad, ' ');
      if (!last) line += " ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

nlohmann::ordered_json ReportTable::Json() const {
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const Report& row : rows_) rows.push_back(row.json());
  return rows;
}

}  // namespace kiln::bench
