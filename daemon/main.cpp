// dbmgrd: the command line, logging set-up and the Server's run; nothing else lives here.
#include <sys/resource.h>

#include <csignal>
#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "dbmgr/config/config.hpp"
#include "server.hpp"

int main(int argc, char** argv) {
  CLI::App app{"dbmgrd: database connection-pooling daemon"};
  dbmgr::config::CommandLine cli;
  std::string config_file, socket_path, log_level;
  bool version = false;
  app.add_option("-c,--config", config_file, "YAML configuration file (default: $DBMGR_CONFIG, "
                                             "else /etc/dbmgr/dbmgr.yaml if it exists)");
  app.add_option("-s,--socket", socket_path, "Unix socket to listen on (default: $DBMGR_SOCKET, "
                                             "else /run/dbmgr/dbmgrd.sock)");
  app.add_option("-l,--log-level", log_level, "trace, debug, info, warn, error or off");
  app.add_flag("-V,--version", version, "print the version and exit");
  CLI11_PARSE(app, argc, argv);
  if (version) {
    std::cout << "dbmgrd 0.1.0\n";
    return 0;
  }
  if (!config_file.empty()) cli.config_file = config_file;
  if (!socket_path.empty()) cli.socket_path = socket_path;
  if (!log_level.empty()) cli.log_level = log_level;

  auto logger = spdlog::stderr_color_mt("dbmgrd");
  spdlog::set_default_logger(logger);
  // Under systemd, journald adds the time; on a terminal, show it.
  if (std::getenv("JOURNAL_STREAM") != nullptr) {
    spdlog::set_pattern("%l: %v");
  } else {
    spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  }

  auto settings = dbmgr::config::load(cli, dbmgr::config::process_env());
  if (!settings.ok()) {
    spdlog::error("configuration: {}", settings.error().to_string());
    return 2;
  }
  auto level = spdlog::level::from_str(settings->log_level);
  spdlog::set_level(level);

  // Every client and backend connection is a descriptor: take all the hard limit allows
  // (a plain start gets a soft limit of 1024, about 990 clients).
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    rlim_t was = nofile.rlim_cur;
    if (nofile.rlim_cur < nofile.rlim_max) {
      nofile.rlim_cur = nofile.rlim_max;
      if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) nofile.rlim_cur = was;
    }
    spdlog::info("file descriptors: soft limit {} (was {}), hard limit {}",
                 static_cast<unsigned long long>(nofile.rlim_cur),
                 static_cast<unsigned long long>(was),
                 static_cast<unsigned long long>(nofile.rlim_max));
  }

  // SQLite and ODBC calls run on libuv's worker pool; its size is fixed at first use.
  if (std::getenv("UV_THREADPOOL_SIZE") == nullptr) {
    setenv("UV_THREADPOOL_SIZE", std::to_string(std::max(1, settings->worker_threads)).c_str(), 1);
  }
  std::signal(SIGPIPE, SIG_IGN);

  dbmgr::daemon::Server server(std::move(*settings), cli, dbmgr::config::process_env());
  if (auto s = server.start(); !s.is_ok()) {
    spdlog::error("{}", s.message());
    return 1;
  }
  return server.run();
}
