// The throwaway PostgreSQL server of the catalog suite's PostgreSQL run (see pg_server.hpp).
#include "pg_server.hpp"

#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>

#ifndef HILUM_PG_BINDIR
namespace hilum::test::pg {  // no server binaries or libpq at configure time: the SQLite run only
bool enabled() { return false; }
std::string database(const std::string&) { return {}; }
std::string catalog_url(const std::string&, const std::string&) { return {}; }
std::string admin_exec(const std::string&, const std::string&) { return "no PostgreSQL"; }
std::string exec_as(const std::string&, const std::string&, const std::string&) { return "no PostgreSQL"; }
std::string admin_value(const std::string&, const std::string&) { return {}; }
std::string stop_server() { return "no PostgreSQL"; }
std::string create_server() { return "no PostgreSQL"; }
void destroy_server() {}
std::string start_server() { return "no PostgreSQL"; }
}  // namespace hilum::test::pg
#else
#include <libpq-fe.h>

namespace hilum::test::pg {
namespace {

namespace fs = std::filesystem;
constexpr const char* kPort = "5432";  // names the socket file in our folder; no TCP port is opened

struct Server {
  fs::path dir;
  std::string prefix;  // "runuser -u postgres -- " when running as root (initdb refuses root)
  bool running = false;
  std::map<std::string, std::string> databases;
  std::mutex mutex;
};

Server& server() {
  static Server s;
  return s;
}

std::string bin(const char* tool) { return std::string(HILUM_PG_BINDIR) + "/" + tool; }

int run(const std::string& command) { return std::system(command.c_str()); }

class Environment final : public ::testing::Environment {
 public:
  void SetUp() override { ASSERT_EQ(create_server(), ""); }
  void TearDown() override { destroy_server(); }
};

[[maybe_unused]] ::testing::Environment* const kEnvironment =
    enabled() ? ::testing::AddGlobalTestEnvironment(new Environment) : nullptr;

std::string conninfo(const std::string& user, const std::string& db) {
  return "host=" + server().dir.string() + " port=" + kPort + " user=" + user + " dbname=" + db;
}

std::string exec_on(const std::string& user, const std::string& db, const std::string& sql, std::string* value) {
  PGconn* conn = PQconnectdb(conninfo(user, db).c_str());
  std::string error;
  if (PQstatus(conn) != CONNECTION_OK) {
    error = PQerrorMessage(conn);
  } else {
    PGresult* r = PQexec(conn, sql.c_str());
    const auto status = PQresultStatus(r);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      error = PQresultErrorMessage(r);
    } else if (value != nullptr && status == PGRES_TUPLES_OK && PQntuples(r) > 0) {
      *value = PQgetvalue(r, 0, 0);
    }
    PQclear(r);
  }
  PQfinish(conn);
  if (!error.empty() && error.back() == '\n') error.pop_back();
  return error;
}

}  // namespace

bool enabled() {
  const char* v = std::getenv("HILUM_TEST_POSTGRESQL");
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

std::string database(const std::string& key) {
  Server& s = server();
  std::lock_guard lock(s.mutex);
  auto it = s.databases.find(key);
  if (it != s.databases.end()) return it->second;
  const std::string name = "t" + std::to_string(::getpid()) + "_" + std::to_string(s.databases.size() + 1);
  const std::string error = exec_on("postgres", "postgres", "CREATE DATABASE " + name, nullptr);
  EXPECT_EQ(error, "") << "creating the test database " << name;
  s.databases.emplace(key, name);
  return name;
}

std::string catalog_url(const std::string& key, const std::string& user) {
  return "postgresql:///" + database(key) + "?host=" + server().dir.string() + "&port=" + kPort + "&user=" + user;
}

std::string admin_exec(const std::string& db, const std::string& sql) { return exec_on("postgres", db, sql, nullptr); }

std::string exec_as(const std::string& user, const std::string& db, const std::string& sql) { return exec_on(user, db, sql, nullptr); }

std::string admin_value(const std::string& db, const std::string& sql) {
  std::string value;
  (void)exec_on("postgres", db, sql, &value);
  return value;
}

std::string create_server() {
  Server& s = server();
  char tmpl[] = "/tmp/hilum-pg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return "cannot create a temporary folder";
  s.dir = tmpl;
  if (::geteuid() == 0) {
    const passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) return "running as root needs the postgres user to run initdb";
    if (::chown(s.dir.c_str(), pw->pw_uid, pw->pw_gid) != 0) return "cannot give " + s.dir.string() + " to the postgres user";
    s.prefix = "runuser -u postgres -- ";
  }
  const std::string d = s.dir.string();
  if (run(s.prefix + bin("initdb") + " -D '" + d + "/data' -U postgres -A trust -E UTF8 --locale=C -N > '" + d + "/initdb.log' 2>&1") != 0) {
    return "initdb failed; see " + d + "/initdb.log";
  }
  return start_server();
}

void destroy_server() {
  Server& s = server();
  if (s.running) (void)run(s.prefix + bin("pg_ctl") + " -D '" + s.dir.string() + "/data' -m immediate -w stop > /dev/null");
  s.running = false;
  std::error_code ec;
  if (!s.dir.empty()) fs::remove_all(s.dir, ec);
}

std::string start_server() {
  Server& s = server();
  const std::string d = s.dir.string();
  if (run(s.prefix + bin("pg_ctl") + " -D '" + d + "/data' -l '" + d + "/server.log' -w -o \"-k " + d + " -h '' -F -p " + kPort +
          "\" start > /dev/null") != 0) {
    return "the server did not start; see " + d + "/server.log";
  }
  s.running = true;
  return {};
}

std::string stop_server() {
  Server& s = server();
  if (run(s.prefix + bin("pg_ctl") + " -D '" + s.dir.string() + "/data' -m fast -w stop > /dev/null") != 0) return "the server did not stop";
  s.running = false;
  return {};
}

}  // namespace hilum::test::pg
#endif
