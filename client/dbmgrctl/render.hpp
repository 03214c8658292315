// Human output of dbmgrctl: the daemon's JSON documents as aligned tables and key/value lists.
//
// Each render_* function takes the document exactly as the daemon sent it (parsed) and
// returns the text to print, ending in a newline. Fields the daemon does not send are
// shown as "-", so an older or newer daemon still renders. Nothing here prints a secret:
// the daemon masks passwords in URIs, and no other field carries one.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace dbmgr::ctl {

using Json = nlohmann::ordered_json;

// A table with a header row; numeric columns are right-aligned, the rest left-aligned,
// columns two spaces apart (as psql shows PgBouncer's SHOW POOLS, without the bars).
class Table {
 public:
  struct Column {
    std::string title;
    bool numeric = false;
  };
  explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string str() const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

std::string render_status(const Json& status);
std::string render_pools(const Json& pools);
std::string render_sessions(const Json& sessions);
std::string render_clients(const Json& clients);
std::string render_engines(const Json& engines);
std::string render_servers(const Json& servers);

// "1h 02m 03s", "4m 05s", "12.3s".
std::string format_duration(double seconds);
// "512 KiB", "10.5 MiB".
std::string format_kib(std::uint64_t kib);

}  // namespace dbmgr::ctl
