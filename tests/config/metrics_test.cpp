// Tests of the `metrics:` key: loopback-only listen addresses, Unix sockets, refusals.
#include <doctest/doctest.h>

#include <string>

#include "dbmgr/config/config.hpp"

using namespace dbmgr::config;

namespace {

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("metrics are off by default") {
  auto r = load_yaml("log_level: info\n", "t.yaml");
  REQUIRE(r.ok());
  CHECK_FALSE(r->metrics.enabled());
  auto empty = load_yaml("metrics:\n  listen: \"\"\n", "t.yaml");
  REQUIRE(empty.ok());
  CHECK_FALSE(empty->metrics.enabled());
}

TEST_CASE("metrics.listen: loopback TCP addresses") {
  auto r = load_yaml("metrics:\n  listen: \"127.0.0.1:9187\"\n", "t.yaml");
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().to_string()));
  CHECK(r->metrics.enabled());
  CHECK(r->metrics.host == "127.0.0.1");
  CHECK(r->metrics.port == 9187);
  CHECK(r->metrics.unix_path.empty());
  CHECK(parse_metrics_listen("localhost:80")->host == "127.0.0.1");
  CHECK(parse_metrics_listen("127.1.2.3:9000")->host == "127.1.2.3");
  CHECK(parse_metrics_listen("[::1]:9187")->host == "::1");
  CHECK(parse_metrics_listen("[::1]:9187")->port == 9187);
}

TEST_CASE("metrics.listen: a Unix socket") {
  auto r = parse_metrics_listen("unix:/run/dbmgr/metrics.sock");
  REQUIRE(r.ok());
  CHECK(r->unix_path == "/run/dbmgr/metrics.sock");
  CHECK(r->port == 0);
  CHECK_FALSE(parse_metrics_listen("unix:relative.sock").ok());
  CHECK_FALSE(parse_metrics_listen("unix:").ok());
}

TEST_CASE("metrics.listen: anything but loopback is refused, with the line and why") {
  for (const char* bad : {"0.0.0.0:9187", "10.0.0.5:9187", "[::]:9187", "example.com:9187",
                          "128.0.0.1:9187", "127.0.0:9187", "127.0.0.256:9187"}) {
    auto r = parse_metrics_listen(bad);
    REQUIRE_MESSAGE(!r.ok(), bad);
    CHECK(r.error().key == "metrics.listen");
    CHECK_MESSAGE(contains(r.error().message, "not a loopback address"), r.error().message);
  }
  for (const char* bad :
       {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http"}) {
    CHECK_MESSAGE(!parse_metrics_listen(bad).ok(), bad);
  }
  auto r = load_yaml("log_level: info\nmetrics:\n  listen: \"0.0.0.0:9187\"\n", "f.yaml");
  REQUIRE(!r.ok());
  CHECK(r.error().line == 3);
  CHECK(r.error().key == "metrics.listen");
  CHECK(contains(r.error().to_string(), "f.yaml:3: metrics.listen: '0.0.0.0' is not a loopback"));
  auto unknown = load_yaml("metrics:\n  port: 9187\n", "f.yaml");
  REQUIRE(!unknown.ok());
  CHECK(unknown.error().key == "metrics.port");
}
