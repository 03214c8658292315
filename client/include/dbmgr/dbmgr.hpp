// libdbmgr: the client library of dbmgr, the database connection-pooling daemon.
//
// Include this one header. The entry point is dbmgr::DatabaseManager (manager.hpp); it
// hands out dbmgr::Session transaction handles (session.hpp) whose execute() returns an
// owned dbmgr::Result (result.hpp). Parameters are dbmgr::Param values (value.hpp); every
// failure is a dbmgr::Error (error.hpp). dbmgr::AdminClient (admin.hpp) is
// the operator's view of the daemon (what dbmgrctl shows). Link with `pkg-config --libs dbmgr`.
//
//   dbmgr::DatabaseManager db_manager({.db_prefix = "test"});
//   db_manager.run([&](dbmgr::Session& db) {
//     db.execute("INSERT INTO users(id, email) VALUES (?, ?)", {id, email});
//   });
//   auto db = db_manager.get_db();
//   for (dbmgr::Row row : db.execute("SELECT email FROM users")) {
//     std::cout << row.get<std::string>("email") << "\n";
//   }
//
// Thread-safety: see each header; the manager is thread-safe, Sessions are per thread.
#pragma once

#include "dbmgr/admin.hpp"
#include "dbmgr/async.hpp"
#include "dbmgr/error.hpp"
#include "dbmgr/manager.hpp"
#include "dbmgr/result.hpp"
#include "dbmgr/session.hpp"
#include "dbmgr/value.hpp"
