// Values that cross the wire: statement parameters (Param), binary data (Blob) and the type
// tags of result cells (Type).
//
// A Param is what `session.execute(sql, {a, b, c})` builds from each argument: NULL
// (nullptr, std::nullopt, an empty std::optional), bool, any integer that fits in int64,
// double, text (const char*, std::string, std::string_view) or bytes (dbmgr::Blob).
//
// Ownership: a Param built from an rvalue std::string or Blob owns it (moved, not copied);
// one built from an lvalue string, a string_view or a const char* only points at it, like a
// std::string_view, so that source must outlive the execute() call. Inside an
// `execute(sql, {...})` expression that always holds; keep it in mind when filling a
// std::vector<Param> in a loop from temporaries of your own.
//
// Thread-safety: plain values; a Param or Blob may be read from many threads at once.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dbmgr {

// The type of a result cell or parameter (same numbering as the wire's value tags).
enum class Type : std::uint8_t {
  kNull = 0,
  kBool = 1,
  kInt64 = 2,
  kDouble = 3,
  kText = 4,
  kBlob = 5
};
std::string_view to_string(Type t);  // "null", "bool", "int64", "double", "text", "blob"

// Binary data (BYTEA, BLOB, VARBINARY). Distinct from text so the daemon binds it as bytes.
class Blob {
 public:
  Blob() = default;
  explicit Blob(std::vector<std::uint8_t> bytes) : bytes_(std::move(bytes)) {}
  Blob(const void* data, std::size_t size)
      : bytes_(static_cast<const std::uint8_t*>(data),
               static_cast<const std::uint8_t*>(data) + size) {}
  // The bytes of `s` (no encoding is implied).
  static Blob from_string(std::string_view s) { return Blob(s.data(), s.size()); }

  const std::uint8_t* data() const { return bytes_.data(); }
  std::size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }
  std::vector<std::uint8_t>& bytes() { return bytes_; }
  std::string_view view() const {
    return {reinterpret_cast<const char*>(bytes_.data()), bytes_.size()};
  }
  friend bool operator==(const Blob&, const Blob&) = default;

 private:
  std::vector<std::uint8_t> bytes_;
};

// One positional statement parameter (`?` in the SQL).
class Param {
 public:
  Param() = default;  // NULL
  Param(std::nullptr_t) {}
  Param(std::nullopt_t) {}
  Param(bool v) : type_(Type::kBool), i_(v ? 1 : 0) {}
  Param(char) = delete;  // ambiguous: a number or a one-letter string? Say which.
  // Every integer type but bool and the character types. A uint64_t above INT64_MAX throws
  // dbmgr::Error (category data).
  template <std::integral T>
  requires(!std::same_as<T, bool> && !std::same_as<T, char> && !std::same_as<T, char8_t> &&
           !std::same_as<T, char16_t> && !std::same_as<T, char32_t> && !std::same_as<T, wchar_t>)
      Param(T v)
      : type_(Type::kInt64), i_(static_cast<std::int64_t>(v)) {
    if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(std::int64_t)) {
      if (v > static_cast<T>(INT64_MAX)) throw_out_of_range();
    }
  }
  template <std::floating_point T>
  Param(T v) : type_(Type::kDouble), d_(static_cast<double>(v)) {}
  // A null pointer is NULL.
  Param(const char* s) {
    if (s != nullptr) set_view(Type::kText, s);
  }
  Param(std::string_view s) { set_view(Type::kText, s); }
  Param(const std::string& s) { set_view(Type::kText, s); }
  Param(std::string&& s) : type_(Type::kText), owned_(std::move(s)), owns_(true) {}
  Param(const Blob& b) { set_view(Type::kBlob, b.view()); }
  // A blob parameter that borrows `bytes` (not copied: they must outlive the call).
  static Param blob_view(std::string_view bytes) {
    Param p;
    p.set_view(Type::kBlob, bytes);
    return p;
  }
  Param(Blob&& b) : type_(Type::kBlob), owns_(true) {
    owned_.assign(reinterpret_cast<const char*>(b.data()), b.size());
  }
  template <typename T>
  Param(const std::optional<T>& v) {
    if (v.has_value()) *this = Param(*v);
  }
  template <typename T>
  Param(std::optional<T>&& v) {
    if (v.has_value()) *this = Param(std::move(*v));
  }

  Param(const Param& o) = default;
  Param(Param&& o) noexcept = default;
  Param& operator=(const Param& o) = default;
  Param& operator=(Param&& o) noexcept = default;

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool as_bool() const { return i_ != 0; }
  std::int64_t as_int64() const { return i_; }
  double as_double() const { return d_; }
  // Text or blob bytes; empty for other types.
  std::string_view bytes() const { return owns_ ? std::string_view(owned_) : view_; }
  // True when the Param holds its own copy of the bytes.
  bool owns_bytes() const { return owns_; }

  friend bool operator==(const Param& a, const Param& b);

 private:
  void set_view(Type t, std::string_view v) {
    type_ = t;
    view_ = v;
  }
  [[noreturn]] static void throw_out_of_range();

  Type type_ = Type::kNull;
  std::int64_t i_ = 0;  // kBool (0/1) and kInt64
  double d_ = 0;
  std::string_view view_;  // text/blob when !owns_
  std::string owned_;      // text/blob when owns_
  bool owns_ = false;
};

}  // namespace dbmgr
