// `modhost version`.
#include <boost/json.hpp>
#include <cstdio>

#include "cli/cli.hpp"
#include "engine/handshake.hpp"
#include "modhost/module.hpp"

#ifndef MODHOST_VERSION
#define MODHOST_VERSION "0.0.0"
#endif

namespace modhost::cli {

void add_version_command(CLI::App& app, GlobalOptions& g) {
  CLI::App* version = app.add_subcommand("version", "Print the versions of modhost and its module ABI");
  version->callback([&g] {
    if (g.json()) {
      print_json(boost::json::object{{"version", MODHOST_VERSION},
                                     {"moduleAbiVersion", kAbiVersion},
                                     {"handshakeCoreVersion", engine::kHandshakeCoreVersion}});
    } else {
      std::printf("modhost %s (module ABI %u, handshake %d)\n", MODHOST_VERSION, kAbiVersion,
                  engine::kHandshakeCoreVersion);
    }
    g_exit_code = kExitOk;
  });
}

}  // namespace modhost::cli
