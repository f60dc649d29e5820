// modhost: the command-line front end of the engine.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/cli.hpp"
#include "engine/logging.hpp"

int main(int argc, char** argv) {
  using namespace modhost;
  cli::GlobalOptions g;
  CLI::App app{
      "modhost: run modules against enclaves of services.\n"
      "Exit codes: 0 ok, 2 usage, 3 invalid input, 4 not found, 5 conflict, 6 unavailable,\n"
      "7 timeout, 8 ABI mismatch, 9 module failed, 10 module crashed, 130 cancelled, 1 internal."};
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--output,-o", g.output, "Output format: text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--log-level,-l,--api-container-log-level", g.log_level,
                 "Log level: trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "warning", "error"}))
      ->capture_default_str();
  app.add_option("--backend", g.backend,
                 "Container backend: auto (Docker when it answers, else native as root), docker or native\n"
                 "(default $MODHOST_BACKEND, else auto)")
      ->envname("MODHOST_BACKEND")
      ->check(CLI::IsMember({"auto", "docker", "native"}))
      ->capture_default_str();
  app.add_option(
      "--docker-host", g.docker_host,
      "Docker engine address (unix:///path or tcp://HOST:PORT); default $DOCKER_HOST or the local socket");
  app.add_option(
      "-H,--host", g.host,
      "Engine daemon to use: unix:///PATH or tcp://HOST:PORT (default $MODHOST_HOST, else the local\n"
      "daemon when one runs, else an engine in this process)");
  app.add_option("--tls-ca", g.tls_ca, "The engine's certificate, for tcp:// (default $MODHOST_TLS_CA)");
  app.add_option("--token-file", g.token_file, "The engine's token, for tcp:// (default $MODHOST_TOKEN)");
  app.parse_complete_callback([&g] {
    LogLevel level = LogLevel::warn;
    engine::parse_log_level(g.log_level, level);
    engine::init_logging(level);
  });

  cli::add_module_commands(app, g);
  cli::add_run_command(app, g);
  cli::add_enclave_commands(app, g);
  cli::add_service_commands(app, g);
  cli::add_files_commands(app, g);
  cli::add_image_commands(app, g);
  cli::add_clean_command(app, g);
  cli::add_engine_commands(app, g);
  cli::add_version_command(app, g);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : cli::kExitUsage;
  }
  cli::release_api();
  return cli::g_exit_code;
}
