// `modhost version`.
#include <boost/json.hpp>
#include <cstdio>
#include <string>

#include "cli/cli.hpp"
#include "engine/handshake.hpp"
#include "modhost/module.hpp"

#ifndef MODHOST_VERSION
#define MODHOST_VERSION "0.0.0"
#endif

namespace modhost::cli {
namespace {

std::string version_line() {
  char line[96];
  std::snprintf(line, sizeof line, "modhost %s (module ABI %u, handshake %d)", MODHOST_VERSION, kAbiVersion,
                engine::kHandshakeCoreVersion);
  return line;
}

}  // namespace

void add_version_command(CLI::App& app, GlobalOptions& g) {
  // `modhost --version` / `-V`: the same line, without a subcommand.
  app.set_version_flag("-V,--version", version_line);
  CLI::App* version = app.add_subcommand("version", "Print the versions of modhost and its module ABI");
  version->callback([&g] {
    if (g.json()) {
      print_json(boost::json::object{{"version", MODHOST_VERSION},
                                     {"moduleAbiVersion", kAbiVersion},
                                     {"handshakeCoreVersion", engine::kHandshakeCoreVersion}});
    } else {
      std::printf("%s\n", version_line().c_str());
    }
    g_exit_code = kExitOk;
  });
}

}  // namespace modhost::cli
