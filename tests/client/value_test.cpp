// Unit tests of libdbmgr's values: Param conversions, Result/Row accessors and type errors,
// Error formatting.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "connection.hpp"  // detail::ResultBuilder, to build Results by hand
#include "dbmgr/dbmgr.hpp"

using dbmgr::Blob;
using dbmgr::Error;
using dbmgr::ErrorCategory;
using dbmgr::Param;
using dbmgr::Result;
using dbmgr::Type;
namespace proto = dbmgr::proto;

TEST_SUITE("client") {
  TEST_CASE("Param: scalars and NULL") {
    CHECK(Param().is_null());
    CHECK(Param(nullptr).is_null());
    CHECK(Param(std::nullopt).is_null());
    CHECK(Param(static_cast<const char*>(nullptr)).is_null());

    Param b(true);
    CHECK(b.type() == Type::kBool);
    CHECK(b.as_bool());
    CHECK_FALSE(Param(false).as_bool());

    CHECK(Param(7).type() == Type::kInt64);
    CHECK(Param(7).as_int64() == 7);
    CHECK(Param(std::int64_t{-1} << 40).as_int64() == (std::int64_t{-1} << 40));
    CHECK(Param(static_cast<unsigned short>(65535)).as_int64() == 65535);
    CHECK(Param(std::uint64_t{9223372036854775807ULL}).as_int64() ==
          std::numeric_limits<std::int64_t>::max());
    CHECK(Param(2.5).type() == Type::kDouble);
    CHECK(Param(2.5).as_double() == 2.5);
    CHECK(Param(1.5f).as_double() == 1.5);
  }

  TEST_CASE("Param: an unsigned value above INT64_MAX is a data error") {
    try {
      Param p(std::uint64_t{9223372036854775808ULL});
      FAIL("no exception");
    } catch (const Error& e) {
      CHECK(e.category() == ErrorCategory::kData);
      CHECK(e.client_side());
    }
  }

  TEST_CASE("Param: text views and owned copies") {
    std::string s = "hello";
    Param view(s);
    CHECK(view.type() == Type::kText);
    CHECK_FALSE(view.owns_bytes());
    CHECK(view.bytes().data() == s.data());

    Param lit("literal");
    CHECK(lit.type() == Type::kText);
    CHECK(lit.bytes() == "literal");

    std::string_view sv = "view";
    CHECK(Param(sv).bytes() == "view");

    Param owned(std::string(100, 'x'));
    CHECK(owned.owns_bytes());
    CHECK(owned.bytes() == std::string(100, 'x'));

    // Copies and moves of an owning Param keep their own bytes.
    std::vector<Param> params;
    for (int i = 0; i < 20; ++i) params.push_back(std::string(50, static_cast<char>('a' + i)));
    for (int i = 0; i < 20; ++i) {
      CHECK(params[i].bytes() == std::string(50, static_cast<char>('a' + i)));
    }
    Param copy = params[3];
    params.clear();
    CHECK(copy.bytes() == std::string(50, 'd'));
  }

  TEST_CASE("Param: blobs and optionals") {
    Blob blob = Blob::from_string(std::string_view("\0\x01\x02", 3));
    Param b(blob);
    CHECK(b.type() == Type::kBlob);
    CHECK(b.bytes().size() == 3);
    CHECK_FALSE(b.owns_bytes());
    Param moved(Blob(std::vector<std::uint8_t>{1, 2, 3, 4}));
    CHECK(moved.owns_bytes());
    CHECK(moved.bytes() == std::string_view("\x01\x02\x03\x04", 4));

    std::optional<int> none;
    std::optional<int> some = 5;
    std::optional<std::string> text = "t";
    CHECK(Param(none).is_null());
    CHECK(Param(some).as_int64() == 5);
    CHECK(Param(text).bytes() == "t");
    CHECK(Param(std::optional<std::string>("owned")).owns_bytes());

    CHECK(Param(1) == Param(std::int64_t{1}));
    CHECK_FALSE(Param(1) == Param(true));
    CHECK(Param("a") == Param(std::string("a")));
    CHECK_FALSE(Param("a") == Param(Blob::from_string("a")));
  }

  TEST_CASE("Param: an initializer list mixes every kind") {
    std::string email = "a@b.c";
    std::optional<double> score;
    auto check = [](std::initializer_list<Param> ps) {
      std::vector<Type> types;
      for (const Param& p : ps) types.push_back(p.type());
      return types;
    };
    CHECK(check({1, email, nullptr, score, true, 2.0, "x", Blob()}) ==
          std::vector<Type>{Type::kInt64, Type::kText, Type::kNull, Type::kNull, Type::kBool,
                            Type::kDouble, Type::kText, Type::kBlob});
  }

  namespace {

  // id | name | data | score | flag | nothing, two rows.
  Result sample() {
    Result r;
    using dbmgr::detail::ResultBuilder;
    ResultBuilder::set_columns(r, {"id", "name", "data", "score", "flag", "nothing"});
    for (int i = 0; i < 2; ++i) {
      ResultBuilder::add_cell(r, proto::Value::int64(i == 0 ? 7 : 5000000000LL));
      ResultBuilder::add_cell(r, proto::Value::text(i == 0 ? "ada" : "bob"));
      ResultBuilder::add_cell(r, proto::Value::blob(std::string_view("\0\xff", 2)));
      ResultBuilder::add_cell(r, proto::Value::real(1.25));
      ResultBuilder::add_cell(r, proto::Value::boolean(i == 1));
      ResultBuilder::add_cell(r, proto::Value::null());
    }
    ResultBuilder::finish_rows(r, 2);
    return r;
  }

  template <typename F>
  Error catch_error(F f) {
    try {
      f();
    } catch (const Error& e) {
      return e;
    }
    FAIL("no dbmgr::Error thrown");
    return Error(ErrorCategory::kInternal, "unreachable");
  }

  }  // namespace

  TEST_CASE("Result: shape, names and typed access") {
    Result r = sample();
    CHECK(r.size() == 2);
    CHECK_FALSE(r.empty());
    CHECK(r.column_count() == 6);
    CHECK(r.columns()[1] == "name");
    CHECK(r.column_index("score") == 3);
    CHECK(r.affected_rows() == -1);

    auto row = r[0];
    CHECK(row.size() == 6);
    CHECK(row.get<int>(0) == 7);
    CHECK(row.get<std::int64_t>("id") == 7);
    CHECK(row.get<std::string>(1) == "ada");
    CHECK(row.get<std::string_view>("name") == "ada");
    CHECK(row.get<Blob>("data").size() == 2);
    CHECK(row.get<Blob>("data").bytes()[1] == 0xff);
    CHECK(row.get<double>("score") == 1.25);
    CHECK(row.get<double>("id") == 7.0);  // int64 reads as double
    CHECK_FALSE(row.get<bool>("flag"));
    CHECK(r[1].get<bool>("flag"));
    CHECK(row.get<bool>("id"));  // 0/1 integers read as bool (SQLite stores booleans so)
    CHECK(row.is_null(5));
    CHECK(row.is_null("nothing"));
    CHECK(row.type("name") == Type::kText);
    CHECK_FALSE(row.get<std::optional<int>>("nothing").has_value());
    CHECK(row.get<std::optional<std::string>>("name") == std::optional<std::string>("ada"));
    CHECK(r.scalar<int>() == 7);
  }

  TEST_CASE("Result: wrong types, NULLs and missing columns are errors") {
    Result r = sample();
    Error e = catch_error([&] { (void)r[0].get<int>("name"); });
    CHECK(e.category() == ErrorCategory::kData);
    CHECK(e.message().find("'name'") != std::string::npos);
    CHECK(e.message().find("text") != std::string::npos);

    e = catch_error([&] { (void)r[0].get<std::string>("nothing"); });
    CHECK(e.category() == ErrorCategory::kData);
    CHECK(e.message().find("NULL") != std::string::npos);

    e = catch_error([&] { (void)r[1].get<int>("id"); });  // 5e9 does not fit in int
    CHECK(e.category() == ErrorCategory::kData);
    CHECK(r[1].get<std::int64_t>("id") == 5000000000LL);

    CHECK(catch_error([&] { (void)r[0].get<double>("name"); }).category() == ErrorCategory::kData);
    CHECK(catch_error([&] { (void)r[0].get<bool>("score"); }).category() == ErrorCategory::kData);
    CHECK(catch_error([&] { (void)r[0].get<std::string>("id"); }).category() ==
          ErrorCategory::kData);
    CHECK(catch_error([&] { (void)r[0].get<int>("nope"); }).category() == ErrorCategory::kNotFound);
    CHECK(catch_error([&] { (void)r[0].get<int>(6); }).category() == ErrorCategory::kNotFound);
    CHECK(catch_error([&] { (void)r.at(2); }).category() == ErrorCategory::kNotFound);
  }

  TEST_CASE("Result: scalar on an empty result, iteration") {
    Result empty;
    CHECK(empty.empty());
    CHECK_FALSE(empty.scalar<std::optional<int>>().has_value());
    CHECK(catch_error([&] { (void)empty.scalar<int>(); }).category() == ErrorCategory::kData);
    for (auto row : empty) {
      (void)row;
      FAIL("an empty result has no rows");
    }

    Result r = sample();
    std::vector<std::string> names;
    for (dbmgr::Row row : r) names.push_back(row.get<std::string>("name"));
    CHECK(names == std::vector<std::string>{"ada", "bob"});
    // Results are values: a copy reads the same.
    Result copy = r;
    CHECK(copy[1].get<std::string>(1) == "bob");
  }

  TEST_CASE("Error: formatting and accessors") {
    Error e(ErrorCategory::kConstraint, "duplicate key", "23505");
    CHECK(e.category() == ErrorCategory::kConstraint);
    CHECK(e.sqlstate() == "23505");
    CHECK(e.message() == "duplicate key");
    CHECK_FALSE(e.client_side());
    CHECK(std::string(e.what()) == "dbmgr constraint error [23505]: duplicate key");

    Error c = Error::client(ErrorCategory::kConnection, "socket closed");
    CHECK(c.client_side());
    CHECK(std::string(c.what()) == "dbmgr connection error: socket closed");

    // Every wire category has a name and the same number as the protocol's.
    for (int i = 1; i <= 21; ++i) {
      auto cat = static_cast<ErrorCategory>(i);
      CHECK(dbmgr::to_string(cat) == proto::to_string(static_cast<proto::ErrorCategory>(i)));
    }
    CHECK(static_cast<int>(ErrorCategory::kBusy) == static_cast<int>(proto::ErrorCategory::kBusy));
    CHECK(static_cast<int>(ErrorCategory::kReadOnly) ==
          static_cast<int>(proto::ErrorCategory::kReadOnly));
    CHECK(static_cast<int>(ErrorCategory::kUnsupported) ==
          static_cast<int>(proto::ErrorCategory::kUnsupported));
    CHECK(dbmgr::to_string(ErrorCategory::kSerialization) == "serialization");
    CHECK(dbmgr::to_string(static_cast<ErrorCategory>(22)) == "unknown");
    CHECK(dbmgr::to_string(Type::kBlob) == "blob");
  }

}  // TEST_SUITE
