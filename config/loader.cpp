// Configuration loading: the YAML file, the DATABASE_* environment overlay and the command line.
//
// The YAML walk reports its first error by throwing a private Failure that load_yaml() turns
// into a Result; yaml-cpp's own exceptions (syntax errors included) are caught at the same
// place. Nothing leaves this file as an exception, and since the walk works on a copy of the
// base Settings, a broken file never yields half-applied settings.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "dbmgr/config/config.hpp"

namespace dbmgr::config {
namespace {

constexpr std::uint32_t kMinFrameBytes = 4 * 1024;
constexpr std::uint32_t kMaxFrameBytes = 1024u * 1024 * 1024;
constexpr std::int64_t kMaxCacheKib = std::int64_t{1} << 30;  // 1 TiB
constexpr int kMaxWorkerThreads = 1024;
constexpr int kMaxPoolSize = 10'000;
constexpr std::string_view kSslModes[] = {"disable", "allow",     "prefer",
                                          "require", "verify-ca", "verify-full"};
constexpr std::string_view kLogLevels[] = {"trace", "debug",    "info", "warn",
                                           "error", "critical", "off"};

// Reads a whole file. Returns 0 or the errno of the failure.
int read_whole_file(const std::string& path, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  out->clear();
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return err;
    }
    if (n == 0) break;
    out->append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return 0;
}

void strip_trailing_newlines(std::string* s) {
  while (!s->empty() && (s->back() == '\n' || s->back() == '\r')) s->pop_back();
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

template <std::size_t N>
bool one_of(std::string_view v, const std::string_view (&set)[N]) {
  return std::find(std::begin(set), std::end(set), v) != std::end(set);
}

template <std::size_t N>
std::string list_of(const std::string_view (&set)[N]) {
  std::string out;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) out += (i + 1 == N) ? " or " : ", ";
    out += set[i];
  }
  return out;
}

// Normalizes a log level ("warning" -> "warn"); nullopt when unknown.
std::optional<std::string> normalize_log_level(std::string_view v) {
  std::string l = lower(v);
  if (l == "warning") l = "warn";
  if (!one_of(l, kLogLevels)) return std::nullopt;
  return l;
}

// Parses a strict decimal integer (no sign games, no trailing junk).
std::optional<std::int64_t> parse_int(std::string_view s) {
  std::int64_t n = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return n;
}

constexpr std::string_view kUnixPrefix = "unix:";

// True for 127.0.0.0/8 written as four decimal numbers.
bool is_ipv4_loopback(std::string_view host) {
  int parts = 0;
  unsigned first = 0;
  std::size_t i = 0;
  while (i <= host.size()) {
    std::size_t dot = host.find('.', i);
    if (dot == std::string_view::npos) dot = host.size();
    std::string_view part = host.substr(i, dot - i);
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || part.size() > 3 || ec != std::errc() || ptr != part.data() + part.size() ||
        v > 255) {
      return false;
    }
    if (parts == 0) first = v;
    ++parts;
    i = dot + 1;
  }
  return parts == 4 && first == 127;
}

std::string unknown_db_type_message(std::string_view v) {
  return "unknown database type '" + std::string(v) +
         "'; expected sqlite, postgresql, mysql, mariadb or mssql";
}

struct Failure {
  Error error;
};

// Walks one YAML document into a Settings.
class YamlWalker {
 public:
  // default_name_given: DATABASE_NAME is set and will name the default database, so the
  // file's default section may leave `name` out.
  YamlWalker(std::string file, bool default_name_given)
      : file_(std::move(file)), default_name_given_(default_name_given) {}

  void apply(const YAML::Node& root, Settings* s);

 private:
  // A map's entries by key, checked for unknown and duplicate keys.
  struct Field {
    YAML::Node key;
    YAML::Node value;
  };
  using Fields = std::map<std::string, Field, std::less<>>;

  [[noreturn]] void fail(int line, std::string key, std::string message) const {
    throw Failure{Error{file_, line, std::move(key), std::move(message)}};
  }
  [[noreturn]] void fail(const YAML::Node& at, std::string key, std::string message) const {
    fail(line_of(at), std::move(key), std::move(message));
  }
  static int line_of(const YAML::Node& n) {
    YAML::Mark m = n.Mark();
    return m.is_null() ? 0 : m.line + 1;
  }
  static std::string join(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  }
  // What a node holds, for messages. Scalars are quoted unless `secret`.
  static std::string describe(const YAML::Node& n, bool secret = false) {
    if (n.IsMap()) return "a map";
    if (n.IsSequence()) return "a list";
    if (n.IsNull()) return "nothing";
    if (secret) return "a value";
    return "'" + n.Scalar() + "'";
  }

  Fields fields(const YAML::Node& map, const std::string& path, int line,
                std::initializer_list<std::string_view> allowed) const;

  std::string string(const Field& f, const std::string& key, bool secret = false) const;
  std::int64_t integer(const Field& f, const std::string& key, std::int64_t min,
                       std::int64_t max) const;
  bool boolean(const Field& f, const std::string& key) const;
  Millis duration(const Field& f, const std::string& key) const;
  std::uint64_t size(const Field& f, const std::string& key, std::uint64_t unit) const;
  std::vector<std::uint32_t> id_list(const Field& f, const std::string& key, bool groups) const;
  const std::string& scalar(const Field& f, const std::string& key, std::string_view want) const;

  void apply_socket(const Field& f, Settings* s) const;
  // Applies a pool or SQLite knob named `name`; false when `name` is neither.
  bool apply_pool_knob(std::string_view name, const Field& f, const std::string& key,
                       PoolSettings* p) const;
  bool apply_sqlite_knob(std::string_view name, const Field& f, const std::string& key,
                         SqliteSettings* q) const;
  void apply_pool_section(const Field& f, const std::string& path, PoolSettings* p) const;
  void apply_sqlite_section(const Field& f, const std::string& path, SqliteSettings* q) const;
  void apply_prefixes(const Field& f, PrefixPolicy* p) const;
  void apply_metrics(const Field& f, MetricsSettings* m) const;
  // Reads one database entry over `db`. `path` is its key path ("default",
  // "databases.main"); `type_required` is true for `databases` entries.
  void apply_entry(const Field& f, const std::string& path, bool type_required,
                   DatabaseConfig* db) const;
  std::string read_password_file(const Field& f, const std::string& key) const;

  std::string file_;
  bool default_name_given_ = false;
};

YamlWalker::Fields YamlWalker::fields(const YAML::Node& map, const std::string& path, int line,
                                      std::initializer_list<std::string_view> allowed) const {
  Fields out;
  if (map.IsNull()) return out;
  if (!map.IsMap()) {
    fail(line_of(map) > 0 ? line_of(map) : line, path, "expected a map, got " + describe(map));
  }
  for (auto it = map.begin(); it != map.end(); ++it) {
    const YAML::Node k = it->first;
    if (!k.IsScalar()) fail(k, path, "a key must be a plain string, got " + describe(k));
    const std::string& name = k.Scalar();
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      fail(k, join(path, name), "unknown key");
    }
    if (out.count(name) != 0) fail(k, join(path, name), "key given twice");
    out.emplace(name, Field{k, it->second});
  }
  return out;
}

const std::string& YamlWalker::scalar(const Field& f, const std::string& key,
                                      std::string_view want) const {
  if (!f.value.IsScalar()) {
    fail(f.value.IsNull() ? f.key : f.value, key,
         "expected " + std::string(want) + ", got " + describe(f.value));
  }
  return f.value.Scalar();
}

std::string YamlWalker::string(const Field& f, const std::string& key, bool secret) const {
  if (f.value.IsNull()) return {};  // `group:` with nothing after it means empty
  if (!f.value.IsScalar()) {
    fail(f.value, key, "expected a string, got " + describe(f.value, secret));
  }
  return f.value.Scalar();
}

std::int64_t YamlWalker::integer(const Field& f, const std::string& key, std::int64_t min,
                                 std::int64_t max) const {
  const std::string& v = scalar(f, key, "an integer");
  auto n = parse_int(v);
  if (!n) fail(f.value, key, "expected an integer, got '" + v + "'");
  if (*n < min || *n > max) {
    fail(f.value, key,
         std::to_string(*n) + " is out of range " + std::to_string(min) + ".." +
             std::to_string(max));
  }
  return *n;
}

bool YamlWalker::boolean(const Field& f, const std::string& key) const {
  const std::string& v = scalar(f, key, "true or false");
  std::string l = lower(v);
  if (l == "true" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "no" || l == "off") return false;
  fail(f.value, key, "expected true or false, got '" + v + "'");
}

Millis YamlWalker::duration(const Field& f, const std::string& key) const {
  const std::string& v = scalar(f, key, "a duration");
  if (auto n = parse_int(v); n && *n != 0) {
    fail(f.value, key,
         "duration '" + v + "' has no unit; write " + v + "s or " + v +
             "ms (a bare number would be ambiguous)");
  }
  auto d = parse_duration(v);
  if (!d) {
    fail(f.value, key,
         "bad duration '" + v + "'; expected a number with a unit: ms, s, m, h or d (e.g. 30s)");
  }
  return *d;
}

std::vector<std::uint32_t> YamlWalker::id_list(const Field& f, const std::string& key,
                                               bool groups) const {
  if (!f.value.IsSequence()) {
    fail(f.value, key, std::string("expected a list of ") + (groups ? "group" : "user") +
                           " names or numbers, e.g. [www-data, 1000]");
  }
  std::vector<std::uint32_t> ids;
  for (const YAML::Node& item : f.value) {
    if (!item.IsScalar()) fail(item, key, "each entry must be a name or a number");
    const std::string& v = item.Scalar();
    if (auto n = parse_int(v); n && *n >= 0 && *n <= 0xfffffffe) {
      ids.push_back(static_cast<std::uint32_t>(*n));
      continue;
    }
    if (groups) {
      group* g = ::getgrnam(v.c_str());
      if (g == nullptr) fail(item, key, "no group named '" + v + "'");
      ids.push_back(g->gr_gid);
    } else {
      passwd* pw = ::getpwnam(v.c_str());
      if (pw == nullptr) fail(item, key, "no user named '" + v + "'");
      ids.push_back(pw->pw_uid);
    }
  }
  return ids;
}

std::uint64_t YamlWalker::size(const Field& f, const std::string& key, std::uint64_t unit) const {
  const std::string& v = scalar(f, key, "a size");
  auto n = parse_size(v, unit);
  if (!n) fail(f.value, key, "bad size '" + v + "'; expected e.g. 65536, 64MiB, 16MB or 512KiB");
  return *n;
}

void YamlWalker::apply_socket(const Field& f, Settings* s) const {
  Fields fs = fields(f.value, "socket", line_of(f.key), {"path", "mode", "group"});
  if (auto it = fs.find("path"); it != fs.end()) {
    std::string p = string(it->second, "socket.path");
    if (p.empty()) fail(it->second.key, "socket.path", "the socket path is empty");
    s->socket_path = std::move(p);
  }
  if (auto it = fs.find("mode"); it != fs.end()) {
    // Always octal, as chmod reads it: 0660, 660 and 0o660 are the same mode.
    std::string v = scalar(it->second, "socket.mode", "an octal mode like \"0660\"");
    std::string_view digits = v;
    if (digits.substr(0, 2) == "0o" || digits.substr(0, 2) == "0O") digits.remove_prefix(2);
    unsigned mode = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), mode, 8);
    if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() ||
        mode > 0777) {
      fail(it->second.value, "socket.mode",
           "bad mode '" + v + "'; expected octal permission bits like \"0660\"");
    }
    if ((mode & 0002) != 0) {  // anyone could connect and use every database
      fail(it->second.value, "socket.mode",
           "mode '" + v + "' lets every user write to the socket; use a group (socket.group) "
           "and a mode like \"0660\"");
    }
    s->socket_mode = static_cast<mode_t>(mode);
  }
  if (auto it = fs.find("group"); it != fs.end()) {
    s->socket_group = string(it->second, "socket.group");
  }
}

bool YamlWalker::apply_pool_knob(std::string_view name, const Field& f, const std::string& key,
                                 PoolSettings* p) const {
  if (name == "pool_size") {
    p->pool_size = static_cast<int>(integer(f, key, 1, kMaxPoolSize));
  } else if (name == "max_overflow") {
    p->max_overflow = static_cast<int>(integer(f, key, 0, kMaxPoolSize));
  } else if (name == "pool_timeout") {
    p->pool_timeout = duration(f, key);
  } else if (name == "pool_recycle") {
    p->pool_recycle = duration(f, key);
  } else if (name == "pool_pre_ping") {
    p->pool_pre_ping = boolean(f, key);
  } else if (name == "idle_in_transaction_timeout") {
    p->idle_in_transaction_timeout = duration(f, key);
  } else if (name == "statement_timeout") {
    p->statement_timeout = duration(f, key);
  } else {
    return false;
  }
  return true;
}

bool YamlWalker::apply_sqlite_knob(std::string_view name, const Field& f, const std::string& key,
                                   SqliteSettings* q) const {
  if (name == "busy_timeout") {
    q->busy_timeout = duration(f, key);
  } else if (name == "cache_size") {
    std::uint64_t bytes = size(f, key, 1024);  // a plain number counts KiB
    std::uint64_t kib = (bytes + 1023) / 1024;
    if (kib > static_cast<std::uint64_t>(kMaxCacheKib)) fail(f.value, key, "cache is too large");
    q->cache_kib = static_cast<std::int64_t>(kib);
  } else if (name == "readers") {
    q->readers = static_cast<int>(integer(f, key, 0, 256));
  } else {
    return false;
  }
  return true;
}

#define DBMGR_POOL_KNOBS                                                        \
  "pool_size", "max_overflow", "pool_timeout", "pool_recycle", "pool_pre_ping", \
      "idle_in_transaction_timeout", "statement_timeout"
#define DBMGR_SQLITE_KNOBS "busy_timeout", "cache_size", "readers"

void YamlWalker::apply_pool_section(const Field& f, const std::string& path,
                                    PoolSettings* p) const {
  Fields fs = fields(f.value, path, line_of(f.key), {DBMGR_POOL_KNOBS});
  for (const auto& [name, field] : fs) apply_pool_knob(name, field, join(path, name), p);
}

void YamlWalker::apply_sqlite_section(const Field& f, const std::string& path,
                                      SqliteSettings* q) const {
  Fields fs = fields(f.value, path, line_of(f.key), {DBMGR_SQLITE_KNOBS});
  for (const auto& [name, field] : fs) apply_sqlite_knob(name, field, join(path, name), q);
}

void YamlWalker::apply_prefixes(const Field& f, PrefixPolicy* p) const {
  Fields fs = fields(f.value, "prefixes", line_of(f.key), {"create_on_demand"});
  auto it = fs.find("create_on_demand");
  if (it == fs.end()) return;
  const YAML::Node& list = it->second.value;
  const std::string key = "prefixes.create_on_demand";
  std::vector<std::string> out;
  if (!list.IsNull()) {
    if (!list.IsSequence()) fail(list, key, "expected a list of prefixes, got " + describe(list));
    for (std::size_t i = 0; i < list.size(); ++i) {
      const YAML::Node item = list[i];
      const std::string item_key = key + "[" + std::to_string(i) + "]";
      if (!item.IsScalar()) fail(item, item_key, "expected a prefix, got " + describe(item));
      auto v = validate_prefix(item.Scalar());
      if (!v.ok()) fail(item, item_key, v.error().message);
      out.push_back(*v);
    }
  }
  p->create_on_demand = std::move(out);
}

std::string YamlWalker::read_password_file(const Field& f, const std::string& key) const {
  std::string path = string(f, key);
  if (path.empty()) fail(f.key, key, "the password file name is empty");
  std::filesystem::path p(path);
  if (p.is_relative()) {
    // Relative to the folder of the config file, so a file and its secret can move together.
    p = std::filesystem::path(file_).parent_path() / p;
  }
  std::string secret;
  if (int err = read_whole_file(p.string(), &secret); err != 0) {
    fail(f.value, key, "cannot read '" + p.string() + "': " + std::strerror(err));
  }
  strip_trailing_newlines(&secret);
  return secret;
}

void YamlWalker::apply_entry(const Field& f, const std::string& path, bool type_required,
                             DatabaseConfig* db) const {
  const int entry_line = line_of(f.key);
  if (type_required && f.value.IsNull()) {
    fail(entry_line, join(path, "type"), "missing required field 'type'");
  }
  Fields fs = fields(f.value, path, entry_line,
                     {"type", "name", "host", "port", "user", "password", "password_file", "path",
                      "sslmode", "driver", "pool", "sqlite", "allow_uids", "allow_gids",
                      DBMGR_POOL_KNOBS, DBMGR_SQLITE_KNOBS});
  auto get = [&](std::string_view name) -> const Field* {
    auto it = fs.find(name);
    return it == fs.end() ? nullptr : &it->second;
  };
  const Field* type = get("type");
  if (type != nullptr) {
    const std::string key = join(path, "type");
    const std::string& v = scalar(*type, key, "a database type");
    auto t = parse_db_type(v);
    if (!t) fail(type->value, key, unknown_db_type_message(v));
    db->type = *t;
  } else if (type_required) {
    fail(entry_line, join(path, "type"), "missing required field 'type'");
  }
  if (const Field* name = get("name")) db->name = string(*name, join(path, "name"));
  if (db->name.empty() && db->type == DbType::kSqlite) db->name = db->key;
  if (db->name.empty() && db->type != DbType::kSqlite && (type_required || !default_name_given_)) {
    fail(entry_line, join(path, "name"),
         "missing required field 'name' (a " + std::string(to_string(db->type)) +
             " database needs the name of the database on the server)");
  }
  if (db->type == DbType::kSqlite && !db->name.empty()) {
    if (auto v = validate_name(db->name); !v.ok()) {
      const Field* name = get("name");
      fail(name != nullptr ? name->value : f.key, join(path, "name"), v.error().message);
    }
  }
  if (const Field* v = get("host")) db->host = string(*v, join(path, "host"));
  if (const Field* v = get("port")) {
    db->port = static_cast<int>(integer(*v, join(path, "port"), 1, 65535));
  }
  if (const Field* v = get("user")) db->user = string(*v, join(path, "user"));
  if (const Field* v = get("path")) {
    db->path = string(*v, join(path, "path"));
    if (db->path.empty()) fail(v->key, join(path, "path"), "the SQLite folder is empty");
  }
  if (const Field* v = get("sslmode")) {
    const std::string key = join(path, "sslmode");
    std::string mode = lower(string(*v, key));
    if (!one_of(mode, kSslModes)) {
      fail(v->value, key, "unknown sslmode '" + mode + "'; expected " + list_of(kSslModes));
    }
    db->sslmode = std::move(mode);
  }
  if (const Field* v = get("driver")) db->driver = string(*v, join(path, "driver"));
  if (const Field* v = get("allow_uids")) db->allow_uids = id_list(*v, join(path, "allow_uids"), false);
  if (const Field* v = get("allow_gids")) db->allow_gids = id_list(*v, join(path, "allow_gids"), true);
  const Field* password = get("password");
  const Field* password_file = get("password_file");
  if (password != nullptr && password_file != nullptr) {
    fail(password_file->key, join(path, "password_file"),
         "give either password or password_file, not both");
  }
  if (password != nullptr) db->password = Secret(string(*password, join(path, "password"), true));
  if (password_file != nullptr) {
    db->password = Secret(read_password_file(*password_file, join(path, "password_file")));
  }
  // Knobs: the `pool:`/`sqlite:` sub-maps first, then knobs written directly in the entry.
  if (const Field* v = get("pool")) apply_pool_section(*v, join(path, "pool"), &db->pool);
  if (const Field* v = get("sqlite")) apply_sqlite_section(*v, join(path, "sqlite"), &db->sqlite);
  for (const auto& [name, field] : fs) {
    if (!apply_pool_knob(name, field, join(path, name), &db->pool)) {
      apply_sqlite_knob(name, field, join(path, name), &db->sqlite);
    }
  }
}

void YamlWalker::apply_metrics(const Field& f, MetricsSettings* m) const {
  Fields fs = fields(f.value, "metrics", line_of(f.key), {"listen"});
  auto it = fs.find("listen");
  if (it == fs.end()) return;
  std::string listen = string(it->second, "metrics.listen");
  if (listen.empty()) {  // `listen: ""` keeps the endpoint off
    *m = MetricsSettings{};
    return;
  }
  auto parsed = parse_metrics_listen(listen);
  if (!parsed.ok()) fail(it->second.value, "metrics.listen", parsed.error().message);
  *m = std::move(*parsed);
}

void YamlWalker::apply(const YAML::Node& root, Settings* s) {
  if (root.IsNull()) return;  // an empty file: the defaults
  if (!root.IsMap()) {
    fail(root, "", "the file must be a map of settings, got " + describe(root));
  }
  Fields fs =
      fields(root, "", 1,
             {"socket", "admin_group", "max_frame_bytes", "drain_timeout", "engine_idle_timeout",
              "max_clients", "handshake_timeout", "max_sessions_per_client",
              "max_client_buffered_bytes", "max_buffered_bytes", "stream_stall_timeout",
              "max_engines", "max_engines_per_client", "log_level", "worker_threads", "pool",
              "sqlite", "default", "databases", "prefixes", "metrics"});
  auto get = [&](std::string_view name) -> const Field* {
    auto it = fs.find(name);
    return it == fs.end() ? nullptr : &it->second;
  };
  // Global sections first: database entries inherit `pool:` and `sqlite:` whatever the order
  // of the keys in the file.
  if (const Field* v = get("socket")) apply_socket(*v, s);
  if (const Field* v = get("admin_group")) s->admin_group = string(*v, "admin_group");
  if (const Field* v = get("max_frame_bytes")) {
    std::uint64_t n = size(*v, "max_frame_bytes", 1);
    if (n < kMinFrameBytes || n > kMaxFrameBytes) {
      fail(v->value, "max_frame_bytes", std::to_string(n) + " bytes is out of range 4KiB..1GiB");
    }
    s->max_frame_bytes = static_cast<std::uint32_t>(n);
  }
  if (const Field* v = get("drain_timeout")) s->drain_timeout = duration(*v, "drain_timeout");
  if (const Field* v = get("engine_idle_timeout")) {
    s->engine_idle_timeout = duration(*v, "engine_idle_timeout");
  }
  if (const Field* v = get("max_clients")) {
    s->max_clients = static_cast<int>(integer(*v, "max_clients", 1, 10'000'000));
  }
  if (const Field* v = get("handshake_timeout")) {
    s->handshake_timeout = duration(*v, "handshake_timeout");
  }
  if (const Field* v = get("max_sessions_per_client")) {
    s->max_sessions_per_client =
        static_cast<int>(integer(*v, "max_sessions_per_client", 1, 10'000'000));
  }
  if (const Field* v = get("max_client_buffered_bytes")) {
    s->max_client_buffered_bytes = size(*v, "max_client_buffered_bytes", 1);
  }
  if (const Field* v = get("max_buffered_bytes")) {
    s->max_buffered_bytes = size(*v, "max_buffered_bytes", 1);
  }
  if (const Field* v = get("stream_stall_timeout")) {
    s->stream_stall_timeout = duration(*v, "stream_stall_timeout");
  }
  if (const Field* v = get("max_engines")) {
    s->max_engines = static_cast<int>(integer(*v, "max_engines", 1, 10'000'000));
  }
  if (const Field* v = get("max_engines_per_client")) {
    s->max_engines_per_client =
        static_cast<int>(integer(*v, "max_engines_per_client", 1, 10'000'000));
  }
  // One frame must fit what a connection may hold, or no large request could ever arrive.
  // Not given: room for two frames (and the defaults' floor).
  if (get("max_client_buffered_bytes") == nullptr) {
    s->max_client_buffered_bytes =
        std::max<std::uint64_t>(s->max_client_buffered_bytes, 2ull * s->max_frame_bytes + 65536);
  }
  if (get("max_buffered_bytes") == nullptr) {
    s->max_buffered_bytes = std::max(s->max_buffered_bytes, s->max_client_buffered_bytes);
  }
  if (s->max_client_buffered_bytes < s->max_frame_bytes + 16 ||
      s->max_buffered_bytes < s->max_client_buffered_bytes) {
    const Field* v = get("max_client_buffered_bytes");
    if (v == nullptr) v = get("max_buffered_bytes");
    if (v == nullptr) v = get("max_frame_bytes");
    fail(v != nullptr ? v->value : root, v != nullptr ? "max_client_buffered_bytes" : "",
         "max_client_buffered_bytes must be at least max_frame_bytes plus a header, and "
         "max_buffered_bytes at least max_client_buffered_bytes");
  }
  if (const Field* v = get("log_level")) {
    const std::string& level = scalar(*v, "log_level", "a log level");
    auto l = normalize_log_level(level);
    if (!l) {
      fail(v->value, "log_level",
           "unknown log level '" + level + "'; expected " + list_of(kLogLevels));
    }
    s->log_level = *l;
  }
  if (const Field* v = get("worker_threads")) {
    s->worker_threads = static_cast<int>(integer(*v, "worker_threads", 1, kMaxWorkerThreads));
  }
  if (const Field* v = get("pool")) apply_pool_section(*v, "pool", &s->pool);
  if (const Field* v = get("sqlite")) apply_sqlite_section(*v, "sqlite", &s->sqlite);
  if (const Field* v = get("prefixes")) apply_prefixes(*v, &s->prefixes);
  if (const Field* v = get("metrics")) apply_metrics(*v, &s->metrics);

  s->default_database.pool = s->pool;
  s->default_database.sqlite = s->sqlite;
  if (const Field* v = get("default")) apply_entry(*v, "default", false, &s->default_database);

  if (const Field* v = get("databases")) {
    if (!v->value.IsNull() && !v->value.IsMap()) {
      fail(v->value, "databases", "expected a map of databases, got " + describe(v->value));
    }
    std::set<std::string> seen;
    for (auto it = v->value.begin(); it != v->value.end(); ++it) {
      const YAML::Node k = it->first;
      if (!k.IsScalar()) fail(k, "databases", "a database key must be a string");
      const std::string& key = k.Scalar();
      const std::string path = "databases." + key;
      if (auto n = validate_name(key); !n.ok()) fail(k, path, n.error().message);
      if (!seen.insert(key).second) fail(k, path, "database given twice");
      DatabaseConfig db;
      db.key = key;
      db.pool = s->pool;
      db.sqlite = s->sqlite;
      apply_entry(Field{k, it->second}, path, true, &db);
      s->databases[key] = std::move(db);
    }
  }
}

}  // namespace

namespace {

Result<Settings> load_yaml_with(std::string_view yaml_text, std::string_view file_name,
                                Settings base, bool default_name_given) {
  const std::string file(file_name);
  try {
    YAML::Node root = YAML::Load(std::string(yaml_text));
    YamlWalker walker(file, default_name_given);
    walker.apply(root, &base);
  } catch (const Failure& f) {
    return f.error;
  } catch (const YAML::Exception& e) {
    // Syntax errors and anything else yaml-cpp reports; its messages do not quote values.
    return Error{file, e.mark.is_null() ? 0 : e.mark.line + 1, "", e.msg};
  } catch (const std::exception& e) {
    return Error{file, 0, "", std::string("cannot load: ") + e.what()};
  }
  base.config_file = file;
  return base;
}

}  // namespace

Result<Settings> load_yaml(std::string_view yaml_text, std::string_view file_name, Settings base) {
  return load_yaml_with(yaml_text, file_name, std::move(base), false);
}

Result<Settings> apply_env(Settings s, const EnvLookup& env) {
  // An empty variable counts as unset (container tools like to export VAR= for "nothing").
  auto get = [&](std::string_view name) -> std::optional<std::string> {
    auto v = env(name);
    if (!v || v->empty()) return std::nullopt;
    return v;
  };
  DatabaseConfig& db = s.default_database;
  if (auto v = get("DATABASE_TYPE")) {
    auto t = parse_db_type(*v);
    if (!t) return Error{.key = "DATABASE_TYPE", .message = unknown_db_type_message(*v)};
    db.type = *t;
  }
  if (auto v = get("DATABASE_NAME")) db.name = *v;
  if (auto v = get("DATABASE_PATH")) db.path = *v;
  if (auto v = get("DATABASE_USER")) db.user = *v;
  if (auto v = get("DATABASE_HOST")) db.host = *v;
  if (auto v = get("DATABASE_DRIVER")) db.driver = *v;  // the ODBC driver (MariaDB, MSSQL)
  if (auto v = get("DATABASE_PORT")) {
    auto n = parse_int(*v);
    if (!n || *n < 1 || *n > 65535) {
      return Error{.key = "DATABASE_PORT",
                   .message = "'" + *v + "' is not a port number (1..65535)"};
    }
    db.port = static_cast<int>(*n);
  }
  if (auto v = get("DATABASE_SSL")) {
    std::string mode = lower(*v);
    if (mode == "true" || mode == "1" || mode == "yes" || mode == "on") mode = "require";
    if (mode == "false" || mode == "0" || mode == "no" || mode == "off") mode = "disable";
    if (!one_of(mode, kSslModes)) {
      return Error{.key = "DATABASE_SSL",
                   .message = "unknown sslmode '" + *v + "'; expected " + list_of(kSslModes) +
                              ", or true/false"};
    }
    db.sslmode = std::move(mode);
  }
  auto password = get("DATABASE_PASSWORD");
  auto password_file = get("DATABASE_PASSWORD_FILE");
  if (password && password_file) {
    return Error{.key = "DATABASE_PASSWORD_FILE",
                 .message = "set either DATABASE_PASSWORD or DATABASE_PASSWORD_FILE, not both"};
  }
  if (password) db.password = Secret(std::move(*password));
  if (password_file) {
    std::string secret;
    if (int err = read_whole_file(*password_file, &secret); err != 0) {
      return Error{.key = "DATABASE_PASSWORD_FILE",
                   .message = "cannot read '" + *password_file + "': " + std::strerror(err)};
    }
    strip_trailing_newlines(&secret);
    db.password = Secret(std::move(secret));
  }
  if (auto v = get("DBMGR_SOCKET")) s.socket_path = *v;

  // The default database as a whole must still make sense.
  if (db.type == DbType::kSqlite && !db.name.empty()) {
    if (auto n = validate_name(db.name); !n.ok()) {
      return Error{.key = "DATABASE_NAME", .message = n.error().message};
    }
  }
  if (db.type != DbType::kSqlite && db.name.empty()) {
    return Error{.key = "DATABASE_NAME",
                 .message = "a " + std::string(to_string(db.type)) +
                            " default database needs a name (DATABASE_NAME or default.name)"};
  }
  return s;
}

Result<Settings> load(const CommandLine& cli, const EnvLookup& env) {
  return load(cli, env, kSystemConfigFile);
}

Result<Settings> load(const CommandLine& cli, const EnvLookup& env, std::string_view system_file) {
  std::string file;
  if (cli.config_file) {
    file = *cli.config_file;
    if (file.empty()) return Error{.key = "--config", .message = "the file name is empty"};
  } else if (auto v = env("DBMGR_CONFIG"); v && !v->empty()) {
    file = *v;
  } else if (std::error_code ec; !system_file.empty() &&
                                 std::filesystem::exists(std::filesystem::path(system_file), ec)) {
    file = std::string(system_file);
  }

  Settings s;
  if (!file.empty()) {
    std::string text;
    if (int err = read_whole_file(file, &text); err != 0) {
      return Error{.file = file,
                   .message = std::string("cannot read the config file: ") + std::strerror(err)};
    }
    auto name = env("DATABASE_NAME");
    auto r = load_yaml_with(text, file, std::move(s), name && !name->empty());
    if (!r.ok()) return r.error();
    s = std::move(*r);
  }
  auto r = apply_env(std::move(s), env);
  if (!r.ok()) return r.error();
  s = std::move(*r);

  if (cli.socket_path) {
    if (cli.socket_path->empty()) {
      return Error{.key = "--socket", .message = "the socket path is empty"};
    }
    s.socket_path = *cli.socket_path;
  }
  if (cli.log_level) {
    auto l = normalize_log_level(*cli.log_level);
    if (!l) {
      return Error{
          .key = "--log-level",
          .message = "unknown log level '" + *cli.log_level + "'; expected " + list_of(kLogLevels)};
    }
    s.log_level = *l;
  }
  return s;
}

Result<MetricsSettings> parse_metrics_listen(std::string_view listen) {
  auto error = [&](std::string message) {
    return Error{.key = "metrics.listen", .message = std::move(message)};
  };
  MetricsSettings m;
  m.listen = std::string(listen);
  if (listen.substr(0, kUnixPrefix.size()) == kUnixPrefix) {
    std::string_view path = listen.substr(kUnixPrefix.size());
    if (path.empty() || path.front() != '/') {
      return error("'" + std::string(listen) + "': a Unix socket needs an absolute path, like " +
                   "unix:/run/dbmgr/metrics.sock");
    }
    if (path.size() >= 108) {
      return error("'" + std::string(listen) + "': the socket path is longer than 107 bytes");
    }
    m.unix_path = std::string(path);
    return m;
  }
  std::size_t colon = listen.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == listen.size()) {
    return error("'" + std::string(listen) +
                 "': expected HOST:PORT (127.0.0.1:9187, [::1]:9187) or unix:/path");
  }
  std::string_view host = listen.substr(0, colon);
  std::string_view port = listen.substr(colon + 1);
  auto n = parse_int(port);
  if (!n || *n < 1 || *n > 65535) {
    return error("'" + std::string(listen) + "': port '" + std::string(port) +
                 "' is not a number in 1..65535");
  }
  m.port = static_cast<int>(*n);
  if (host == "localhost") {
    m.host = "127.0.0.1";
  } else if (host == "[::1]") {
    m.host = "::1";
  } else if (is_ipv4_loopback(host)) {
    m.host = std::string(host);
  } else {
    return error("'" + std::string(host) +
                 "' is not a loopback address; the metrics endpoint has no authentication, so "
                 "it listens only on 127.0.0.1, [::1] or a Unix socket (put a proxy in front to "
                 "publish it)");
  }
  return m;
}

}  // namespace dbmgr::config
