// Each engine folder's driver (driver_for() is the way in for everyone else).
#pragma once

#include "backend/driver.hpp"

namespace dbmgr::daemon {

const Driver& sqlite_driver();    // backend/sqlite/
const Driver& postgres_driver();  // backend/postgres/
const Driver& odbc_driver(config::DbType type);  // backend/odbc/: MySQL, MariaDB, MSSQL

}  // namespace dbmgr::daemon
