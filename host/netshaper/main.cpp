// modhost-netshaper: delay, jitter, correlation and loss for the packets that
// iptables rules send to NFQUEUE queues in containers' network namespaces.
// The engine writes the config, installs the rules and starts this program;
// see shaper.hpp for its life and config.hpp for the config.
//
//   modhost-netshaper --config FILE --pid-file FILE --applied-file FILE
//
// SIGHUP re-reads the config; SIGTERM/SIGINT let every held packet through
// and exit 0. The applied file holds the generation in force, written only
// once its queues are bound. Exit code 2: bad arguments or config, or a
// namespace that cannot be entered or a queue that cannot be bound.
#include <CLI/CLI.hpp>
#include <exception>
#include <new>

#include "netshaper/shaper.hpp"

using namespace modhost::netshaper;

namespace {

int main_checked(int argc, char** argv) {
  Options options;
  CLI::App app{
      "Holds the packets of NFQUEUE queues in other network namespaces for a sampled delay, or drops "
      "them.\nSIGHUP re-reads the config, SIGTERM/SIGINT let every held packet through and exit.",
      "modhost-netshaper"};
  app.add_option("--config", options.config_path, "the config (JSON)")->required();
  app.add_option("--pid-file", options.pid_file, "where to write our pid")->required();
  app.add_option("--applied-file", options.applied_file, "where to write the generation in force")
      ->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    log_line(std::string(e.what()) + " (see --help)");
    return kExitStartError;
  }
  return run(options);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return main_checked(argc, argv);
  } catch (const std::exception& e) {
    log_line(std::string("fatal: ") + e.what());
  } catch (...) {
    log_line("fatal: unknown exception");
  }
  return kExitStartError;
}
