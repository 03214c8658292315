// dbmgr::Param and dbmgr::Type helpers.
#include "dbmgr/value.hpp"

#include "dbmgr/error.hpp"

namespace dbmgr {

std::string_view to_string(Type t) {
  switch (t) {
    case Type::kNull:
      return "null";
    case Type::kBool:
      return "bool";
    case Type::kInt64:
      return "int64";
    case Type::kDouble:
      return "double";
    case Type::kText:
      return "text";
    case Type::kBlob:
      return "blob";
  }
  return "unknown";
}

void Param::throw_out_of_range() {
  throw Error::client(ErrorCategory::kData,
                      "unsigned parameter above 9223372036854775807 does not fit in int64");
}

bool operator==(const Param& a, const Param& b) {
  if (a.type_ != b.type_) return false;
  switch (a.type_) {
    case Type::kNull:
      return true;
    case Type::kBool:
    case Type::kInt64:
      return a.i_ == b.i_;
    case Type::kDouble:
      return a.d_ == b.d_;
    case Type::kText:
    case Type::kBlob:
      return a.bytes() == b.bytes();
  }
  return false;
}

}  // namespace dbmgr
