// Issue 16, item 16: every command answers --help with its own options, and the usage cannot drift
// from the parser: both come from the command table (app/cli/command_table.cpp). These tests run the
// real executable and compare what it prints, and what it accepts, with that table.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>
#include <string>

#include "cli_runner.hpp"
#include "command_table.hpp"
#include "temp_dir_test.hpp"

namespace fs = std::filesystem;
namespace cli = hilum::cli;
using hilum::test::CliRun;
using hilum::test::quote;
using hilum::test::run_cli;

namespace {

// Every option spelling (--name) in `text`.
std::set<std::string> options_in(const std::string& text) {
  std::set<std::string> out;
  static const std::regex option(R"((^|[\s\[(|,`])(--[a-z][a-z0-9-]*))");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), option); it != std::sregex_iterator(); ++it) {
    out.insert((*it)[2].str());
  }
  return out;
}

// The long spellings of `options`; the global usage shows names only, a command's help aliases too.
std::set<std::string> long_names(const std::vector<cli::OptionSpec>& options, bool aliases = true) {
  std::set<std::string> out;
  for (const auto& o : options) {
    out.emplace(o.name);
    if (aliases && o.alias.size() > 2) out.emplace(o.alias);
  }
  return out;
}

// The part of a command's help after "options:".
std::string options_section(const std::string& help) {
  const auto at = help.find("\noptions:\n");
  return at == std::string::npos ? std::string() : help.substr(at);
}

// The commands the global usage lists: the first word of each line indented by exactly two spaces
// under a section heading.
std::set<std::string> commands_in(const std::string& usage) {
  std::set<std::string> out;
  static const std::regex line(R"((^|\n)  ([a-z][a-z0-9-]*)( |\n))");
  const std::string listing = usage.substr(0, usage.find("\noptions before the command:"));
  for (auto it = std::sregex_iterator(listing.begin(), listing.end(), line); it != std::sregex_iterator(); ++it) {
    out.insert((*it)[2].str());
  }
  return out;
}

// Runs a shell line with stderr kept.
CliRun run_shell(const std::string& line) {
  CliRun r;
  FILE* pipe = ::popen((line + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.out.append(buf, n);
  const int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class CliHelp : public hilum::test::TempDirTest {
 protected:
  // Runs hilum-cli on a catalog path in the temporary folder, stderr kept.
  CliRun run(const std::string& args) {
    return run_cli("--db " + quote((dir_ / "catalog.db").string()) + " " + args, true);
  }
};

TEST_F(CliHelp, GlobalUsageListsExactlyTheTablesCommandsAndOptions) {
  const CliRun r = run_cli("--help");
  ASSERT_EQ(r.status, 0) << r.out;
  std::set<std::string> commands, options = long_names(cli::global_options());
  for (const auto& c : cli::command_table()) {
    commands.emplace(c.name);
    const auto own = long_names(c.options, false);
    options.insert(own.begin(), own.end());
    for (const auto& s : c.subcommands) {
      const auto sub = long_names(s.options, false);
      options.insert(sub.begin(), sub.end());
    }
  }
  EXPECT_EQ(commands_in(r.out), commands) << r.out;
  EXPECT_EQ(options_in(r.out), options) << r.out;
  // The other ways of asking give the same text.
  EXPECT_EQ(run_cli("help").out, r.out);
  EXPECT_EQ(run_cli("-h").out, r.out);
  for (const auto& line : hilum::test::lines(r.out)) EXPECT_LE(line.size(), 100u) << line;
}

TEST_F(CliHelp, EveryCommandAnswersHelpWithItsOwnOptions) {
  // `line --help` succeeds with a usage naming `line` and lists exactly `spec`'s options; its text.
  const auto check = [&](const std::string& line, const cli::CommandSpec& spec) {
    const CliRun r = run(line + " --help");
    EXPECT_EQ(r.status, 0) << line << ":\n" << r.out;
    EXPECT_EQ(r.out.rfind("usage: hilum-cli [--db PATH] " + line, 0), 0u) << r.out;
    auto expected = long_names(spec.options);
    expected.insert("--help");
    EXPECT_EQ(options_in(options_section(r.out)), expected) << line << ":\n" << r.out;
    return r.out;
  };
  for (const auto& c : cli::command_table()) {
    const std::string name(c.name);
    const std::string help = check(name, c);
    EXPECT_EQ(run(name + " -h").out, help) << name;
    EXPECT_EQ(run("help " + name).out, help) << name;
    for (const auto& s : c.subcommands) {
      check(name + " " + std::string(s.name), s);
      // The command's help names each subcommand.
      EXPECT_NE(help.find("\n  " + std::string(s.name)), std::string::npos) << name << " " << s.name;
    }
  }
}

// The reported defect: `hilum-cli import --help` said "unknown option".
TEST_F(CliHelp, ImportHelpDescribesImportsOptions) {
  const CliRun r = run("import --help");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.find("unknown option"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--jobs N"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--copy"), std::string::npos) << r.out;
  // --help after other options and operands, too, and nothing is imported.
  const CliRun late = run("import " + quote((dir_ / "nothing").string()) + " --json --help");
  EXPECT_EQ(late.status, 0) << late.out;
  EXPECT_EQ(late.out, r.out);
  EXPECT_FALSE(fs::exists(dir_ / "catalog.db"));
}

// Each option of the table reaches a parser that knows it: the command may refuse the line for
// another reason (an operand missing, an empty catalog), but never as an unknown option.
TEST_F(CliHelp, EveryOptionInTheTableIsKnownToItsCommand) {
  const auto check = [&](const std::string& command, const cli::OptionSpec& o) {
    for (const std::string_view spelling : {o.name, o.alias}) {
      if (spelling.empty()) continue;
      // `listen` runs until stopped: given a few seconds, listening means its options were taken.
      const bool runs_until_stopped = command == "listen";
      std::string line = std::string(runs_until_stopped ? "timeout 3 " : "timeout 60 ") + std::string(HILUM_CLI) + " --db " + quote((dir_ / "catalog.db").string()) + " " +
                         command + " " + std::string(spelling);
      if (!o.value.empty()) line += " 1";
      const CliRun r = run_shell(line);
      // (An unknown value, a finding say, is the command's business: only the option is checked.)
      EXPECT_EQ(r.out.find("unknown option"), std::string::npos) << line << "\n" << r.out;
      EXPECT_EQ(r.out.find("unknown argument"), std::string::npos) << line << "\n" << r.out;
      if (!runs_until_stopped) {
        EXPECT_NE(r.status, 124) << line << ": timed out";
      }
    }
  };
  for (const auto& c : cli::command_table()) {
    for (const auto& o : c.options) check(std::string(c.name), o);
    for (const auto& s : c.subcommands) {
      for (const auto& o : s.options) check(std::string(c.name) + " " + std::string(s.name), o);
    }
  }
}

TEST_F(CliHelp, AnOptionNotInTheTableIsRefusedWithTheCommandsHelpNamed) {
  for (const std::string line : {"import --no-such-option x", "labels add --json --no-such-option", "models list --activate",
                                 "render --window"}) {
    const CliRun r = run(line);
    EXPECT_EQ(r.status, 2) << line << "\n" << r.out;
    const std::string command = line.substr(0, line.find(" --"));
    EXPECT_NE(r.out.find("see hilum-cli " + command + " --help"), std::string::npos) << line << "\n" << r.out;
  }
  const CliRun unknown = run("models frobnicate");
  EXPECT_EQ(unknown.status, 2);
  EXPECT_NE(unknown.out.find("list, show, import, activate, promote, rollback, export"), std::string::npos) << unknown.out;
  // A value that looks like an option is a value: --comment takes "--help" as its text.
  const CliRun value = run("label --comment --help");
  EXPECT_EQ(value.status, 2) << value.out;
  EXPECT_NE(value.out.find("no IMAGE given"), std::string::npos) << value.out;
}

}  // namespace
