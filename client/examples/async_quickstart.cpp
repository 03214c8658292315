// async_quickstart: the async client as a new user writes it. Start dbmgrd, then:
//   DBMGR_SOCKET=./run/dbmgrd.sock ./build/client/dbmgr-async-example
// tests/integration/async_test.cpp runs it against a real dbmgrd and checks what it prints.
#include <dbmgr/dbmgr.hpp>
#include <future>
#include <iostream>
#include <vector>

// One transaction. After its first co_await it continues on the library's I/O thread.
dbmgr::Task<void> visit(dbmgr::AsyncSession db, int user) {
  co_await db.execute("INSERT INTO async_visits(user_id) VALUES (?)", dbmgr::params(user));
  co_await db.commit();
  co_await db.close();
}

int main() {
  try {
    dbmgr::DatabaseManager db_manager({.db_prefix = "test"});
    db_manager.execute("CREATE TABLE IF NOT EXISTS async_visits (user_id INTEGER NOT NULL)");
    db_manager.execute("DELETE FROM async_visits");

    // 1,000 transactions in flight at once from this one thread, over one daemon socket.
    std::vector<dbmgr::Task<void>> tasks;
    for (int user = 0; user < 1000; ++user) tasks.push_back(visit(db_manager.get_async_db(), user));
    for (auto& t : tasks) t.get();  // waits; rethrows a transaction's dbmgr::Error

    // run_async(): commits when the coroutine returns, rolls back when it throws.
    auto count = db_manager
                     .run_async([](dbmgr::AsyncSession& db) -> dbmgr::Task<std::int64_t> {
                       dbmgr::Result r = co_await db.execute("SELECT COUNT(*) FROM async_visits");
                       co_return r.scalar<std::int64_t>();
                     })
                     .get();
    std::cout << count << " visits\n";

    // A std::future instead of co_await, here for a one-shot (its own transaction).
    std::future<dbmgr::Result> deleted =
        db_manager.execute_async("DELETE FROM async_visits WHERE user_id < ?", {500});
    std::cout << "deleted " << deleted.get().affected_rows() << "\n";
  } catch (const dbmgr::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
