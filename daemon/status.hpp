// Status: the daemon's error value. No exceptions cross the event loop; functions that can
// fail return a Status (or Result<T>) and callers check it.
//
// A Status carries what the client will see in an error frame: a protocol category, the
// backend's SQLSTATE where there is one, and a message a person can act on. Messages must
// never contain a password.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "dbmgr/protocol/protocol.hpp"

namespace dbmgr::daemon {

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(proto::ErrorCategory category, std::string message, std::string sqlstate = {})
      : ok_(false),
        category_(category),
        sqlstate_(std::move(sqlstate)),
        message_(std::move(message)) {}

  static Status ok() { return {}; }
  static Status connection(std::string m) { return {proto::ErrorCategory::kConnection, std::move(m)}; }
  static Status timeout(std::string m) { return {proto::ErrorCategory::kTimeout, std::move(m)}; }
  static Status protocol(std::string m) { return {proto::ErrorCategory::kProtocol, std::move(m)}; }
  static Status internal(std::string m) { return {proto::ErrorCategory::kInternal, std::move(m)}; }
  static Status invalid(std::string m) { return {proto::ErrorCategory::kInvalidRequest, std::move(m)}; }
  static Status not_found(std::string m) { return {proto::ErrorCategory::kNotFound, std::move(m)}; }
  static Status permission(std::string m) { return {proto::ErrorCategory::kPermission, std::move(m)}; }

  bool is_ok() const { return ok_; }
  proto::ErrorCategory category() const { return category_; }
  const std::string& sqlstate() const { return sqlstate_; }
  const std::string& message() const { return message_; }
  // "category: message [SQLSTATE]" for logs.
  std::string to_string() const;

 private:
  bool ok_ = true;
  proto::ErrorCategory category_ = proto::ErrorCategory::kInternal;
  std::string sqlstate_;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::move(v)) {}       // NOLINT
  Result(Status s) : v_(std::move(s)) {}  // NOLINT
  bool is_ok() const { return v_.index() == 0; }
  T& value() { return std::get<0>(v_); }
  const Status& status() const { return std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace dbmgr::daemon
