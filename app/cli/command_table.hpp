// hilum-cli's command table: the one description of every command, its operands and its options.
// The global usage (hilum-cli --help), each command's help (hilum-cli COMMAND --help) and the check
// of a command line before its command runs are all generated from it, so they cannot drift apart:
// an option that is not in the table is refused before the command's own parser sees it.
//
// Adding a command: write `int cmd_NAME(const Global&, const Args&)` (commands.hpp), then add one
// CommandSpec to the table in command_table.cpp: its name, the section of the global usage it belongs
// to, its operands, a one-sentence summary, its options ({"--name", "-alias" or "", "VALUE" or "" for
// a flag, "help", and `true` when it is required}) and its handler. A command with subcommands (labels, models) lists them in
// `subcommands` (each with its own operands and options, no handler) and gets the subcommand name as
// args[0]. tests/cli/test_cli_help.cpp then checks its --help and that its handler knows each option.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"

namespace hilum::cli {

struct OptionSpec {
  std::string_view name;   // "--jobs"
  std::string_view alias;  // another spelling ("-j", "--unlabelled"), or empty
  std::string_view value;  // what the option takes ("N", "DIR"), empty for a flag
  std::string_view help;   // one sentence
  bool required = false;   // shown without brackets in the synopsis (the command checks it)
};

using Handler = int (*)(const Global&, const Args&);

struct CommandSpec {
  std::string_view name;
  std::string_view section;   // heading of the global usage it is listed under (one of sections())
  std::string_view operands;  // e.g. "PATH...", "[IMAGE]"; empty when none
  std::string_view summary;   // what it does, one or two sentences
  std::vector<OptionSpec> options;
  std::vector<CommandSpec> subcommands;  // labels list|add|history, models ...: args[0] names one
  Handler handler = nullptr;             // nullptr for a subcommand (its parent's handler runs it)
};

// The sections of the global usage, in order, and the options placed before the command.
const std::vector<std::string_view>& sections();
const std::vector<OptionSpec>& global_options();

// Every command, in the order the global usage lists them.
const std::vector<CommandSpec>& command_table();
const CommandSpec* find_command(std::string_view name);
const CommandSpec* find_subcommand(const CommandSpec& command, std::string_view name);
const OptionSpec* find_option(const std::vector<OptionSpec>& options, std::string_view spelling);

// hilum-cli --help, and hilum-cli COMMAND [SUBCOMMAND] --help (`sub` null: the command's own help).
std::string global_usage();
std::string command_help(const CommandSpec& command, const CommandSpec* sub = nullptr);

// Checks `args` (after the command, and after the subcommand for one that has them) against `spec`'s
// options: every option known, every option that takes a value followed by one. Options end at "--".
struct ArgsCheck {
  bool help = false;   // --help or -h asked for (in an option's place, not as a value)
  std::string error;   // non-empty: the command line is wrong, and why
};
ArgsCheck check_args(const CommandSpec& spec, const std::string& command_name, const Args& args, std::size_t first = 0);

// Runs one command line (argv after the global options): `help`, a command's --help, the check
// above, then the command's handler. Returns the exit status.
int run_command(const Global& global, const Args& argv);

}  // namespace hilum::cli
