// ODBC connection strings.
#include "backend/odbc/odbc_connstr.hpp"

#include <fmt/format.h>

namespace dbmgr::daemon::odbc {

Target target_for(config::DbType type, std::string_view driver) {
  if (type != config::DbType::kMssql) return Target::kMariadb;
  if (driver.empty()) driver = default_driver(type);
  // Microsoft's drivers are "ODBC Driver 17 for SQL Server", "ODBC Driver 18 for SQL Server"
  // (or their library, libmsodbcsql-18.so); anything else is taken for FreeTDS.
  if (driver.find("ODBC Driver") != std::string_view::npos ||
      driver.find("msodbcsql") != std::string_view::npos) {
    return Target::kMssqlMicrosoft;
  }
  return Target::kMssqlFreetds;
}

std::string_view default_driver(config::DbType type) {
  return type == config::DbType::kMssql ? "FreeTDS" : "MariaDB Unicode";
}

std::string escape_value(std::string_view v) {
  bool braces = v.empty() ? false : (v.front() == ' ' || v.back() == ' ');
  for (char c : v) {
    if (c == ';' || c == '{' || c == '}' || c == '=') braces = true;
  }
  if (!braces) return std::string(v);
  std::string out = "{";
  for (char c : v) {
    out += c;
    if (c == '}') out += '}';
  }
  out += '}';
  return out;
}

namespace {

class Builder {
 public:
  void add(std::string_view key, std::string_view value) {
    if (value.empty()) return;
    std::string v = escape_value(value);
    text_ += fmt::format("{}={};", key, v);
    masked_ += fmt::format("{}={};", key, v);
  }
  void add_secret(std::string_view key, const config::Secret& value) {
    if (value.empty()) return;
    text_ += fmt::format("{}={};", key, escape_value(value.reveal()));
    masked_ += fmt::format("{}=***;", key);
  }
  ConnString done() { return ConnString{std::move(text_), std::move(masked_)}; }

 private:
  std::string text_;
  std::string masked_;
};

// The driver attribute: a name from odbcinst.ini goes in braces, a library path as it is.
std::string driver_attr(std::string_view driver) {
  return driver.find('/') != std::string_view::npos ? std::string(driver)
                                                      : fmt::format("{{{}}}", driver);
}

}  // namespace

ConnString connection_string(const config::DatabaseConfig& db, std::string_view database) {
  std::string_view driver = db.driver.empty() ? default_driver(db.type) : db.driver;
  Builder b;
  // DRIVER's braces are the driver name's own syntax: added here, not by escape_value().
  std::string head = fmt::format("DRIVER={};", driver_attr(driver));
  const bool socket = !db.host.empty() && db.host.front() == '/';
  const std::string port = db.port > 0 ? std::to_string(db.port) : std::string();
  switch (target_for(db.type, driver)) {
    case Target::kMariadb:
      if (socket) {
        b.add("SOCKET", db.host);
      } else {
        b.add("SERVER", db.host.empty() ? "localhost" : db.host);
        b.add("PORT", port);
      }
      b.add("DATABASE", database);
      b.add("UID", db.user);
      b.add_secret("PWD", db.password);
      b.add("CHARSET", "utf8mb4");
      // 1048576 no result cache: rows stream from the server instead of arriving whole
      // (forward-only cursors only, which is all dbmgrd uses); 2097152 forward-only cursor;
      // 2 found rows: an UPDATE counts the rows it matched, also those it left as they were,
      // as PostgreSQL, SQLite and SQL Server count (and SQLAlchemy's ORM expects).
      b.add("OPTION", "3145730");
      b.add("NO_PROMPT", "1");
      if (db.sslmode == "require" || db.sslmode == "verify-ca" || db.sslmode == "verify-full") {
        b.add("FORCETLS", "1");
        if (db.sslmode != "require") b.add("SSLVERIFY", "1");
      }
      break;
    case Target::kMssqlFreetds:
      b.add("SERVER", db.host.empty() ? "localhost" : db.host);
      b.add("PORT", port.empty() ? "1433" : port);
      b.add("DATABASE", database);
      b.add("UID", db.user);
      b.add_secret("PWD", db.password);
      b.add("TDS_Version", "7.4");
      b.add("ClientCharset", "UTF-8");
      if (db.sslmode == "require" || db.sslmode == "verify-ca" || db.sslmode == "verify-full") {
        b.add("Encryption", "require");
      }
      break;
    case Target::kMssqlMicrosoft: {
      std::string server = fmt::format("tcp:{}", db.host.empty() ? "localhost" : db.host);
      if (!port.empty()) server += "," + port;
      b.add("Server", server);
      b.add("Database", database);
      b.add("UID", db.user);
      b.add_secret("PWD", db.password);
      // Driver 18 encrypts by default; sslmode picks: disable/allow/prefer -> Encrypt=no,
      // require -> Encrypt=yes with any certificate, verify-* -> Encrypt=yes, verified.
      if (db.sslmode.empty() || db.sslmode == "disable" || db.sslmode == "allow" ||
          db.sslmode == "prefer") {
        b.add("Encrypt", "no");
      } else {
        b.add("Encrypt", "yes");
        b.add("TrustServerCertificate", db.sslmode == "require" ? "yes" : "no");
      }
      break;
    }
  }
  ConnString s = b.done();
  s.text = head + s.text;
  s.masked = head + s.masked;
  return s;
}

std::string create_database_sql(config::DbType type, std::string_view name) {
  auto quoted = [&](char open, char close) {
    std::string out(1, open);
    for (char c : name) {
      out += c;
      if (c == close) out += c;
    }
    out += close;
    return out;
  };
  if (type == config::DbType::kMssql) {
    std::string literal;
    for (char c : name) {
      literal += c;
      if (c == '\'') literal += c;
    }
    return fmt::format("IF DB_ID(N'{}') IS NULL CREATE DATABASE {}", literal, quoted('[', ']'));
  }
  return fmt::format("CREATE DATABASE IF NOT EXISTS {}", quoted('`', '`'));
}

}  // namespace dbmgr::daemon::odbc
