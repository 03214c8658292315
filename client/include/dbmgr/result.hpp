// dbmgr::Result and dbmgr::Row: the owned, fully read result of one statement.
//
// execute() reads every row batch the daemon streams and copies the cells into one Result:
// column names, a flat row-major array of cells, and one byte arena for all text and blob
// values (so a result of any size costs a handful of allocations). A Row is a cheap view
// (result pointer + index) and is valid while its Result is alive and not moved from.
//
// Typed access: row.get<T>(column) with T one of bool, int, int64_t, double, std::string,
// std::string_view (a view into the Result), dbmgr::Blob, or std::optional of any of them.
// A NULL cell reads as std::nullopt for optional types and throws dbmgr::Error (category
// data) otherwise; a cell whose type does not convert throws the same. Conversions that lose
// nothing are allowed: bool <- int64 (0/1 like SQLite stores them), int64 <- bool,
// double <- int64, int <- int64 when in range, std::string/Blob <- text or blob.
//
// Thread-safety: a Result is a plain value; const access from many threads is safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dbmgr/error.hpp"
#include "dbmgr/value.hpp"

namespace dbmgr {

class Result;
namespace detail {
class ResultBuilder;
template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};
}  // namespace detail

class Row {
 public:
  Row(const Result* result, std::size_t index) : result_(result), index_(index) {}

  std::size_t index() const { return index_; }
  std::size_t size() const;  // number of columns

  Type type(std::size_t column) const;
  Type type(std::string_view column) const;
  bool is_null(std::size_t column) const { return type(column) == Type::kNull; }
  bool is_null(std::string_view column) const { return type(column) == Type::kNull; }

  template <typename T>
  T get(std::size_t column) const;
  // By name (the first column so called); throws dbmgr::Error (not_found) if there is none.
  template <typename T>
  T get(std::string_view column) const;

 private:
  friend class Result;
  bool get_bool(std::size_t column) const;
  std::int64_t get_int64(std::size_t column) const;
  int get_int(std::size_t column) const;
  double get_double(std::size_t column) const;
  std::string_view get_bytes(std::size_t column, const char* wanted) const;  // text/blob
  std::size_t column_index(std::string_view name) const;

  const Result* result_;
  std::size_t index_;
};

class Result {
 public:
  Result() = default;

  // Column names in order; empty for statements that return no rows (INSERT, UPDATE...).
  const std::vector<std::string>& columns() const { return columns_; }
  std::size_t column_count() const { return columns_.size(); }
  // Index of the first column called `name`; throws dbmgr::Error (not_found) if none is.
  std::size_t column_index(std::string_view name) const;
  // The type the backend declared for a column where it knows one, else Type::kNull.
  Type declared_type(std::size_t column) const { return declared_types_.at(column); }

  std::size_t size() const { return row_count_; }
  bool empty() const { return row_count_ == 0; }
  Row operator[](std::size_t row) const { return Row(this, row); }
  // Bounds-checked: throws dbmgr::Error (not_found) past the end.
  Row at(std::size_t row) const;

  // Rows changed by INSERT/UPDATE/DELETE as the backend reports them (-1 when unknown).
  std::int64_t affected_rows() const { return affected_rows_; }
  // The id the last INSERT generated where the backend reports one (SQLite rowid,
  // MySQL AUTO_INCREMENT), else 0.
  std::int64_t last_insert_id() const { return last_insert_id_; }

  // The first column of the first row. An empty result gives std::nullopt for optional T
  // and throws dbmgr::Error (category data) otherwise.
  template <typename T>
  T scalar() const;

  class Iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Row;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Row;
    Iterator() = default;
    Iterator(const Result* r, std::size_t i) : r_(r), i_(i) {}
    Row operator*() const { return Row(r_, i_); }
    Iterator& operator++() {
      ++i_;
      return *this;
    }
    Iterator operator++(int) {
      Iterator t = *this;
      ++i_;
      return t;
    }
    bool operator==(const Iterator& o) const { return i_ == o.i_ && r_ == o.r_; }

   private:
    const Result* r_ = nullptr;
    std::size_t i_ = 0;
  };
  Iterator begin() const { return Iterator(this, 0); }
  Iterator end() const { return Iterator(this, row_count_); }

 private:
  friend class Row;
  friend class detail::ResultBuilder;

  struct Cell {
    Type type = Type::kNull;
    std::int64_t i = 0;      // kBool, kInt64
    double d = 0;            // kDouble
    std::size_t offset = 0;  // kText, kBlob: bytes_[offset, offset + length)
    std::size_t length = 0;
  };
  const Cell& cell(std::size_t row, std::size_t column) const;

  std::vector<std::string> columns_;
  std::vector<Type> declared_types_;
  std::vector<Cell> cells_;  // row-major, row_count_ * columns_.size()
  std::string bytes_;        // every text and blob value, back to back
  std::size_t row_count_ = 0;
  std::int64_t affected_rows_ = -1;
  std::int64_t last_insert_id_ = 0;
};

// ---- templates ----

template <typename T>
T Row::get(std::size_t column) const {
  if constexpr (detail::IsOptional<T>::value) {
    if (is_null(column)) return std::nullopt;
    return get<typename T::value_type>(column);
  } else if constexpr (std::is_same_v<T, bool>) {
    return get_bool(column);
  } else if constexpr (std::is_same_v<T, int>) {
    return get_int(column);
  } else if constexpr (std::is_same_v<T, std::int64_t> || std::is_same_v<T, long long>) {
    return static_cast<T>(get_int64(column));
  } else if constexpr (std::is_same_v<T, double>) {
    return get_double(column);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return std::string(get_bytes(column, "std::string"));
  } else if constexpr (std::is_same_v<T, std::string_view>) {
    return get_bytes(column, "std::string_view");
  } else if constexpr (std::is_same_v<T, Blob>) {
    return Blob::from_string(get_bytes(column, "dbmgr::Blob"));
  } else {
    static_assert(!sizeof(T*),
                  "Row::get<T>: T must be bool, int, int64_t, double, std::string, "
                  "std::string_view, dbmgr::Blob or std::optional of one of them");
  }
}

template <typename T>
T Row::get(std::string_view column) const {
  return get<T>(column_index(column));
}

template <typename T>
T Result::scalar() const {
  if (empty() || columns_.empty()) {
    if constexpr (detail::IsOptional<T>::value) {
      return std::nullopt;
    } else {
      throw Error::client(ErrorCategory::kData, "scalar() on a result without rows");
    }
  }
  return (*this)[0].get<T>(std::size_t{0});
}

}  // namespace dbmgr
