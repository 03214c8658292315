// ODBC connection strings for the ODBC engine: MariaDB/MySQL (MariaDB Connector/ODBC) and
// Microsoft SQL Server (FreeTDS, or Microsoft's ODBC Driver 17/18), built from a database's
// configuration.
//
// Values are escaped as ODBC requires: a value holding any of ;{}= or spaces at either end
// is wrapped in braces, with every '}' doubled ({pass}}word}). The password is part of the
// string handed to SQLDriverConnect only: masked() gives the same string with PWD=*** for
// logs and errors.
//
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "dbmgr/config/config.hpp"

namespace dbmgr::daemon::odbc {

// Which server and driver family a connection string is for.
enum class Target : std::uint8_t {
  kMariadb,       // MariaDB or MySQL through MariaDB Connector/ODBC
  kMssqlFreetds,  // SQL Server through FreeTDS (tdsodbc)
  kMssqlMicrosoft,  // SQL Server through "ODBC Driver 17/18 for SQL Server"
};

// The target for a database type and configured driver name.
Target target_for(config::DbType type, std::string_view driver);
// The driver name used when the configuration names none.
std::string_view default_driver(config::DbType type);

// An ODBC attribute value, escaped (braces where needed).
std::string escape_value(std::string_view v);

struct ConnString {
  std::string text;    // for SQLDriverConnect: holds the password
  std::string masked;  // the same with PWD=*** (never the password)
};

// The connection string for `db`; `database` is the database to connect to (empty: none, to
// create a database on demand).
ConnString connection_string(const config::DatabaseConfig& db, std::string_view database);

// The statement that creates database `name` on demand when it does not exist (MariaDB:
// CREATE DATABASE IF NOT EXISTS `name`; SQL Server: IF DB_ID(N'name') IS NULL CREATE
// DATABASE [name]). `name` has passed the naming rules; it is quoted all the same.
std::string create_database_sql(config::DbType type, std::string_view name);

}  // namespace dbmgr::daemon::odbc
