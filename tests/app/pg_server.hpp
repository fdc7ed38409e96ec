// The PostgreSQL run of the catalog suite (CTest label `postgresql`): with HILUM_TEST_POSTGRESQL set,
// a throwaway server is started for the test run (initdb into a temporary folder, as the `postgres`
// user when the tests run as root; a Unix socket in that folder, no TCP), and every catalog a test
// opens is a fresh database on it. Stopped and deleted when the run ends.
#pragma once

#include <string>

namespace hilum::test::pg {

// Whether this run tests the PostgreSQL engine.
[[nodiscard]] bool enabled();
// The catalog URL of a fresh database for `key` (the same key, the same database), as `user`.
[[nodiscard]] std::string catalog_url(const std::string& key, const std::string& user = "postgres");
// The database name behind `key` (created by catalog_url).
[[nodiscard]] std::string database(const std::string& key);
// Runs `sql` as the superuser on `db`: "" when it worked, else the server's message.
[[nodiscard]] std::string admin_exec(const std::string& db, const std::string& sql);
// Runs `sql` as `user` on `db`: "" when it worked, else the server's message.
[[nodiscard]] std::string exec_as(const std::string& user, const std::string& db, const std::string& sql);
// The first column of the first row of `sql` run as the superuser ("" on error).
[[nodiscard]] std::string admin_value(const std::string& db, const std::string& sql);

// The server itself, for a test program that is not the catalog suite (the suite's run calls these
// before and after its tests): initdb into a fresh temporary folder and start ("" or why not); stop
// and delete it all.
[[nodiscard]] std::string create_server();
void destroy_server();
// Stops the server (fast shutdown: every session is ended, as when a server goes away) and starts
// it again on the same folder and socket: "" when it worked, else why not.
[[nodiscard]] std::string stop_server();
[[nodiscard]] std::string start_server();

}  // namespace hilum::test::pg
