// quickstart: libdbmgr as a new user writes it. Start dbmgrd, then:
//   DBMGR_SOCKET=./run/dbmgrd.sock ./build/client/dbmgr-example
// (DatabaseManager reads DBMGR_SOCKET itself; nothing here passes it explicitly.)
#include <cstdio>
#include <dbmgr/dbmgr.hpp>
#include <iostream>
#include <string>
#include <vector>

int main() {
  try {
    // "test" prefix: the daemon resolves the default database to "test.<name>" and creates
    // it on demand. test_connection fails here, early and clearly, if the backend is down.
    dbmgr::DatabaseManager db_manager({.db_prefix = "test", .test_connection = true});
    std::cout << "database: " << db_manager.database_type() << " " << db_manager.database_name()
              << " at " << db_manager.database_uri() << "\n";

    // The primary-key column type is the dialect's (TEXT on SQLite, UUID on PostgreSQL...).
    db_manager.execute("CREATE TABLE IF NOT EXISTS quickstart_users (id " +
                       db_manager.pk_column_type() +
                       " PRIMARY KEY, email TEXT NOT NULL, visits INTEGER NOT NULL)");

    // run(): one transaction, committed when the lambda returns, rolled back if it throws.
    db_manager.run([](dbmgr::Session& db) {
      db.execute("DELETE FROM quickstart_users");
      const char* ids[] = {"00000000-0000-0000-0000-000000000001",
                           "00000000-0000-0000-0000-000000000002",
                           "00000000-0000-0000-0000-000000000003"};
      const char* emails[] = {"ada@example.com", "bob@example.org", "cy@example.com"};
      for (int i = 0; i < 3; ++i) {
        db.execute("INSERT INTO quickstart_users(id, email, visits) VALUES (?, ?, ?)",
                   {ids[i], emails[i], 0});
      }
    });

    // One-shot: its own transaction in one round trip.
    auto updated = db_manager.execute(
        "UPDATE quickstart_users SET visits = visits + 1 WHERE email LIKE ?", {"%.com"});
    std::cout << "updated " << updated.affected_rows() << " rows\n";

    {
      // pipeline(): a whole transaction in one write (its statements and the COMMIT), for when
      // no statement needs an earlier one's result. The first error rolls all of it back.
      auto db = db_manager.get_db();
      std::vector<dbmgr::Result> results =
          db.pipeline()
              .add("UPDATE quickstart_users SET visits = visits + 1 WHERE email = ?",
                   {"ada@example.com"})
              .add("UPDATE quickstart_users SET visits = visits + 1 WHERE email = ?",
                   {"cy@example.com"})
              .add("SELECT SUM(visits) FROM quickstart_users")
              .commit();
      std::cout << "pipelined: " << results.size() << " statements, "
                << results[2].scalar<int64_t>() << " visits in all\n";
    }

    {
      // get_db(): a scoped session; commits at scope exit, rolls back if an exception leaves.
      auto db = db_manager.get_db();
      auto rows = db.execute(
          "SELECT email, visits FROM quickstart_users WHERE email REGEXP ? ORDER BY email",
          {"^[a-c].*\\.com$"});
      for (const dbmgr::Row& row : rows) {
        std::cout << row.get<std::string>("email") << " visits=" << row.get<int64_t>("visits")
                  << "\n";
      }
      auto count = db.execute("SELECT COUNT(*) FROM quickstart_users").scalar<int64_t>();
      std::cout << count << " users\n";
    }
    return 0;
  } catch (const dbmgr::Error& e) {
    std::fprintf(stderr, "quickstart: %s\n", e.what());
    return 1;
  }
}
