// Running a host program inside another process's network namespace: the
// child enters the namespace between fork and exec, so the program sees that
// namespace's interfaces and netfilter tables and the host's filesystem.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "modhost/result.hpp"

namespace modhost::engine {

struct CommandOutput {
  int exit_code = 0;
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH, then /usr/sbin and /sbin) with `input` on
// its stdin, in the network namespace of process `pid`. An error only when
// the program could not be run; its exit code is the caller's to judge.
Result<CommandOutput> run_in_netns(int pid, const std::vector<std::string>& argv,
                                   std::string_view input = {});

// The absolute path of a program, or an error that names the package to install.
Result<std::string> find_program(std::string_view name, std::string_view package);

}  // namespace modhost::engine
