// dbmgr::Result and dbmgr::Row: typed, checked access to an owned result.
#include "dbmgr/result.hpp"

#include <limits>
#include <string>

namespace dbmgr {
namespace {

[[noreturn]] void throw_type(const Result& r, std::size_t row, std::size_t column,
                             const char* wanted, Type got) {
  std::string msg = "row " + std::to_string(row) + ", column " + std::to_string(column);
  if (column < r.columns().size()) msg += " ('" + r.columns()[column] + "')";
  if (got == Type::kNull) {
    msg += " is NULL; read it as std::optional<";
    msg += wanted;
    msg += "> or check is_null()";
  } else {
    msg += ": cannot read ";
    msg += to_string(got);
    msg += " as ";
    msg += wanted;
  }
  throw Error::client(ErrorCategory::kData, std::move(msg));
}

}  // namespace

std::size_t Result::column_index(std::string_view name) const {
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    if (columns_[i] == name) return i;
  }
  throw Error::client(ErrorCategory::kNotFound,
                      "no column named '" + std::string(name) + "' in the result");
}

Row Result::at(std::size_t row) const {
  if (row >= row_count_) {
    throw Error::client(
        ErrorCategory::kNotFound,
        "row " + std::to_string(row) + " of a result with " + std::to_string(row_count_) + " rows");
  }
  return Row(this, row);
}

const Result::Cell& Result::cell(std::size_t row, std::size_t column) const {
  if (row >= row_count_ || column >= columns_.size()) {
    throw Error::client(ErrorCategory::kNotFound,
                        "cell (" + std::to_string(row) + ", " + std::to_string(column) +
                            ") outside a result of " + std::to_string(row_count_) + " rows and " +
                            std::to_string(columns_.size()) + " columns");
  }
  return cells_[row * columns_.size() + column];
}

std::size_t Row::size() const { return result_->column_count(); }

Type Row::type(std::size_t column) const { return result_->cell(index_, column).type; }

Type Row::type(std::string_view column) const { return type(column_index(column)); }

std::size_t Row::column_index(std::string_view name) const { return result_->column_index(name); }

bool Row::get_bool(std::size_t column) const {
  const Result::Cell& c = result_->cell(index_, column);
  if (c.type == Type::kBool || c.type == Type::kInt64) return c.i != 0;
  throw_type(*result_, index_, column, "bool", c.type);
}

std::int64_t Row::get_int64(std::size_t column) const {
  const Result::Cell& c = result_->cell(index_, column);
  if (c.type == Type::kBool || c.type == Type::kInt64) return c.i;
  throw_type(*result_, index_, column, "int64_t", c.type);
}

int Row::get_int(std::size_t column) const {
  const Result::Cell& c = result_->cell(index_, column);
  if (c.type == Type::kBool || c.type == Type::kInt64) {
    if (c.i < std::numeric_limits<int>::min() || c.i > std::numeric_limits<int>::max()) {
      throw Error::client(ErrorCategory::kData,
                          "row " + std::to_string(index_) + ", column " + std::to_string(column) +
                              ": " + std::to_string(c.i) + " does not fit in int; use int64_t");
    }
    return static_cast<int>(c.i);
  }
  throw_type(*result_, index_, column, "int", c.type);
}

double Row::get_double(std::size_t column) const {
  const Result::Cell& c = result_->cell(index_, column);
  if (c.type == Type::kDouble) return c.d;
  if (c.type == Type::kInt64) return static_cast<double>(c.i);
  throw_type(*result_, index_, column, "double", c.type);
}

std::string_view Row::get_bytes(std::size_t column, const char* wanted) const {
  const Result::Cell& c = result_->cell(index_, column);
  if (c.type == Type::kText || c.type == Type::kBlob) {
    return std::string_view(result_->bytes_).substr(c.offset, c.length);
  }
  throw_type(*result_, index_, column, wanted, c.type);
}

}  // namespace dbmgr
