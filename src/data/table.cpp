// Typed columns, the Table, type inference and splits.
#include <cmath>
#include <cstdlib>
#include <random>
#include <unordered_map>
#include <string_view>
#include <unordered_set>

#include "candor/data.h"
#include "candor/error.h"
#include "data/internal.h"

namespace candor::data {

const char* column_type_name(ColumnType type) {
  switch (type) {
    case ColumnType::kNumeric:
      return "numeric";
    case ColumnType::kCategorical:
      return "categorical";
    case ColumnType::kText:
      return "text";
  }
  return "unknown";
}

ColumnType parse_column_type(const std::string& name) {
  if (name == "numeric") return ColumnType::kNumeric;
  if (name == "categorical") return ColumnType::kCategorical;
  if (name == "text") return ColumnType::kText;
  throw Error(ErrorCode::kInvalidArgument, "unknown column type '" + name + "'",
              "use numeric, categorical or text");
}

ErrorPolicy parse_error_policy(const std::string& name) {
  if (name == "fail") return ErrorPolicy::kFail;
  if (name == "skip") return ErrorPolicy::kSkip;
  throw Error(ErrorCode::kInvalidArgument, "unknown error policy '" + name + "'",
              "use fail or skip");
}

size_t Column::n_missing() const {
  size_t n = 0;
  for (uint8_t m : missing) n += m != 0;
  return n;
}

namespace internal {

bool parse_number(const std::string& s, double* out) {
  if (s.empty()) return false;
  const char* begin = s.c_str();
  char* end = nullptr;
  double v = std::strtod(begin, &end);
  if (end == begin) return false;
  while (*end == ' ' || *end == '\t') ++end;
  if (*end != '\0' || !std::isfinite(v)) return false;
  // strtod accepts "inf", "nan", hex: keep only plain decimal numbers.
  for (const char* p = begin; p < end; ++p) {
    char c = *p;
    if (!((c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E' ||
          c == ' ' || c == '\t'))
      return false;
  }
  *out = v;
  return true;
}

}  // namespace internal
using internal::parse_number;

namespace {
constexpr size_t kMaxCategoryBytes = 256;
}  // namespace

Column make_column(const std::string& name, std::vector<std::string> raw,
                   std::vector<uint8_t> missing, const ColumnType* forced, size_t max_categories) {
  Column col;
  col.name = name;
  const size_t n = raw.size();
  if (missing.empty()) missing.assign(n, 0);
  if (missing.size() != n)
    throw Error(ErrorCode::kInternal, "column '" + name + "': missing mask has wrong length");
  col.raw = std::move(raw);
  col.missing = std::move(missing);

  ColumnType type;
  if (forced) {
    type = *forced;
  } else {
    bool all_numeric = true;
    size_t present = 0;
    for (size_t i = 0; i < n && all_numeric; ++i) {
      if (col.missing[i]) continue;
      ++present;
      double v;
      all_numeric = parse_number(col.raw[i], &v);
    }
    if (all_numeric && present > 0) {
      type = ColumnType::kNumeric;
    } else {
      std::unordered_set<std::string_view> distinct;  // views of col.raw: no copy of a value
      size_t limit = std::min(max_categories, std::max<size_t>(50, present / 10));
      bool few = true;
      for (size_t i = 0; i < n; ++i) {
        if (col.missing[i]) continue;
        // A value longer than a category name is free text (a category is copied into every
        // featurizer, index and report that names it).
        if (col.raw[i].size() > kMaxCategoryBytes) {
          few = false;
          break;
        }
        distinct.insert(col.raw[i]);
        if (distinct.size() > limit) {
          few = false;
          break;
        }
      }
      type = few ? ColumnType::kCategorical : ColumnType::kText;
    }
  }
  col.type = type;
  if (type == ColumnType::kNumeric) {
    col.numeric.assign(n, std::nan(""));
    for (size_t i = 0; i < n; ++i) {
      if (col.missing[i]) continue;
      double v;
      if (!parse_number(col.raw[i], &v)) {
        // The caller (a reader) maps row -> line; here we report the row.
        throw Error(ErrorCode::kInvalidArgument,
                    "column '" + name + "': value '" + col.raw[i] + "' at row " +
                        std::to_string(i + 1) + " is not a number",
                    "declare the column categorical or text, or fix the value");
      }
      col.numeric[i] = v;
    }
  } else if (type == ColumnType::kCategorical) {
    std::unordered_map<std::string_view, int32_t> index;  // views of col.raw
    col.codes.assign(n, -1);
    for (size_t i = 0; i < n; ++i) {
      if (col.missing[i]) continue;
      auto it = index.find(col.raw[i]);
      if (it == index.end()) {
        it = index.emplace(col.raw[i], static_cast<int32_t>(col.categories.size())).first;
        col.categories.push_back(col.raw[i]);
      }
      col.codes[i] = it->second;
    }
  }
  return col;
}

Table::Table(std::string source, std::vector<Column> columns, std::vector<int64_t> lines,
             std::vector<SkippedRecord> skipped)
    : source_(std::move(source)),
      columns_(std::move(columns)),
      lines_(std::move(lines)),
      skipped_(std::move(skipped)) {
  for (const Column& c : columns_) {
    if (c.size() != lines_.size())
      throw Error(ErrorCode::kInternal, source_ + ": column '" + c.name + "' has " +
                                            std::to_string(c.size()) + " values, table has " +
                                            std::to_string(lines_.size()) + " rows");
  }
}

std::vector<std::string> Table::column_names() const {
  std::vector<std::string> names;
  for (const Column& c : columns_) names.push_back(c.name);
  return names;
}

bool Table::has_column(const std::string& name) const {
  for (const Column& c : columns_)
    if (c.name == name) return true;
  return false;
}

size_t Table::column_index(const std::string& name) const {
  for (size_t i = 0; i < columns_.size(); ++i)
    if (columns_[i].name == name) return i;
  std::string have;
  for (const Column& c : columns_) have += (have.empty() ? "" : ", ") + c.name;
  throw Error(ErrorCode::kNotFound,
              source_ + ": no column '" + name + "' (the columns are: " + have + ")",
              "name a column the data has");
}

const Column& Table::column(const std::string& name) const { return columns_[column_index(name)]; }

std::string Table::where(size_t row) const {
  return source_ + " line " + std::to_string(row < lines_.size() ? lines_[row] : 0);
}

Table Table::select_rows(const std::vector<size_t>& rows) const {
  std::vector<Column> cols;
  cols.reserve(columns_.size());
  for (const Column& c : columns_) {
    Column out;
    out.name = c.name;
    out.type = c.type;
    out.categories = c.categories;
    for (size_t r : rows) {
      if (r >= n_rows())
        throw Error(ErrorCode::kInvalidArgument,
                    source_ + ": row " + std::to_string(r) + " out of range");
      out.raw.push_back(c.raw[r]);
      out.missing.push_back(c.missing[r]);
      if (c.type == ColumnType::kNumeric) out.numeric.push_back(c.numeric[r]);
      if (c.type == ColumnType::kCategorical) out.codes.push_back(c.codes[r]);
    }
    cols.push_back(std::move(out));
  }
  std::vector<int64_t> lines;
  for (size_t r : rows) lines.push_back(lines_[r]);
  return Table(source_, std::move(cols), std::move(lines), skipped_);
}

void Table::set_column(Column column) {
  if (column.size() != n_rows())
    throw Error(ErrorCode::kInvalidArgument,
                source_ + ": column '" + column.name + "' has " + std::to_string(column.size()) +
                    " values, the table has " + std::to_string(n_rows()) + " rows");
  for (Column& c : columns_) {
    if (c.name == column.name) {
      c = std::move(column);
      return;
    }
  }
  columns_.push_back(std::move(column));
}

Table concat(const Table& a, const Table& b) {
  std::vector<Column> cols;
  for (const Column& ca : a.columns()) {
    std::vector<std::string> raw = ca.raw;
    std::vector<uint8_t> miss = ca.missing;
    const bool has = b.has_column(ca.name);
    for (size_t r = 0; r < b.n_rows(); ++r) {
      if (has) {
        const Column& cb = b.column(ca.name);
        raw.push_back(cb.raw[r]);
        miss.push_back(cb.missing[r]);
        double v;
        if (ca.type == ColumnType::kNumeric && !cb.missing[r] && !parse_number(cb.raw[r], &v))
          throw Error(ErrorCode::kInvalidArgument,
                      b.where(r) + ", column '" + ca.name + "': '" + cb.raw[r] +
                          "' is not a number (the column is numeric in " + a.source() + ")");
      } else {
        raw.emplace_back();
        miss.push_back(1);
      }
    }
    Column c = make_column(ca.name, std::move(raw), std::move(miss), &ca.type);
    if (ca.type == ColumnType::kCategorical) {
      // Keep a's category order first.
      std::vector<std::string> cats = ca.categories;
      for (const auto& k : c.categories)
        if (std::find(cats.begin(), cats.end(), k) == cats.end()) cats.push_back(k);
      std::unordered_map<std::string, int32_t> idx;
      for (size_t k = 0; k < cats.size(); ++k) idx.emplace(cats[k], static_cast<int32_t>(k));
      for (size_t r = 0; r < c.size(); ++r)
        if (!c.missing[r]) c.codes[r] = idx[c.raw[r]];
      c.categories = std::move(cats);
    }
    cols.push_back(std::move(c));
  }
  std::vector<int64_t> lines = a.lines();
  lines.insert(lines.end(), b.lines().begin(), b.lines().end());
  std::vector<SkippedRecord> skipped = a.skipped();
  for (const auto& s : b.skipped()) skipped.push_back({s.line, b.source() + ": " + s.reason});
  return Table(a.source(), std::move(cols), std::move(lines), std::move(skipped));
}

Split split_by_seed(size_t n_rows, double validation_fraction, double test_fraction,
                    uint64_t seed) {
  if (!(validation_fraction >= 0 && validation_fraction < 1 && test_fraction >= 0 &&
        test_fraction < 1 && validation_fraction + test_fraction < 1))
    throw Error(ErrorCode::kInvalidArgument,
                "split fractions must be in [0, 1) with a sum below 1 (validation " +
                    std::to_string(validation_fraction) + ", test " +
                    std::to_string(test_fraction) + ")");
  std::vector<size_t> order(n_rows);
  for (size_t i = 0; i < n_rows; ++i) order[i] = i;
  std::mt19937_64 rng(seed);
  for (size_t i = n_rows; i > 1; --i) {
    size_t j = static_cast<size_t>(rng() % i);  // bias negligible for table sizes
    std::swap(order[i - 1], order[j]);
  }
  size_t n_test = static_cast<size_t>(std::llround(test_fraction * n_rows));
  size_t n_val = static_cast<size_t>(std::llround(validation_fraction * n_rows));
  Split s;
  s.test.assign(order.begin(), order.begin() + n_test);
  s.validation.assign(order.begin() + n_test, order.begin() + n_test + n_val);
  s.train.assign(order.begin() + n_test + n_val, order.end());
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.validation.begin(), s.validation.end());
  std::sort(s.test.begin(), s.test.end());
  return s;
}

Split split_by_column(const Table& table, const std::string& column) {
  const Column& c = table.column(column);
  Split s;
  for (size_t r = 0; r < table.n_rows(); ++r) {
    const std::string& v = c.raw[r];
    if (c.is_missing(r))
      throw Error(ErrorCode::kInvalidArgument,
                  table.where(r) + ", column '" + column + "': missing split value",
                  "every row needs train, validation or test");
    if (v == "train")
      s.train.push_back(r);
    else if (v == "validation" || v == "valid" || v == "val" || v == "dev")
      s.validation.push_back(r);
    else if (v == "test")
      s.test.push_back(r);
    else
      throw Error(ErrorCode::kInvalidArgument, table.where(r) + ", column '" + column +
                                                   "': split value '" + v +
                                                   "' is not train, validation or test");
  }
  return s;
}

}  // namespace candor::data
