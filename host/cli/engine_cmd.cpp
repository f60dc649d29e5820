// `modhost engine run|start|stop|status|restart`: the engine as a daemon.
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cli/cli.hpp"
#include "daemon/client.hpp"
#include "daemon/daemon.hpp"
#include "engine/builtins.hpp"
#include "engine/logging.hpp"

#ifndef MODHOST_VERSION
#define MODHOST_VERSION "0.0.0"
#endif

namespace modhost::cli {
namespace {

std::string self_exe() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("modhost") : p.string();
}

boost::json::array json_strings(const std::vector<std::string>& v) {
  boost::json::array a;
  for (const auto& s : v) a.push_back(boost::json::string(s));
  return a;
}

int run_foreground(const GlobalOptions& g, const std::vector<std::string>& listen) {
  // An engine's log says what it serves unless asked to be quieter.
  if (g.log_level == "warn") engine::init_logging(LogLevel::info);
  daemon::RunOptions o;
  o.paths = daemon::default_paths();
  o.listen = listen;
  o.engine.builtins = &builtin_registry();
  o.engine.backend = g.backend;
  o.engine.docker_host = g.docker_host;
  o.version = MODHOST_VERSION;
  Status s = daemon::run(o);
  if (!s.ok()) return fail(g, s.error());
  return kExitOk;
}

int run_start(const GlobalOptions& g, const std::vector<std::string>& listen) {
  daemon::StartOptions o;
  o.paths = daemon::default_paths();
  o.listen = listen;
  o.extra_args = {"--backend", g.backend, "--log-level", g.log_level == "warn" ? "info" : g.log_level};
  if (!g.docker_host.empty()) {
    o.extra_args.push_back("--docker-host");
    o.extra_args.push_back(g.docker_host);
  }
  progress(g, "Starting the engine on " + o.paths.address() + "...");
  auto started = daemon::start(self_exe(), o);
  if (!started.ok()) return fail(g, started.error());
  const long pid = started->pid;
  const std::vector<std::string> listening =
      started->listen.empty() ? std::vector<std::string>{o.paths.address()} : started->listen;
  if (g.json()) {
    print_json(boost::json::object{{"pid", pid}, {"listen", json_strings(listening)}});
  } else {
    std::printf("Engine started (pid %ld) on %s\n", pid, listening.front().c_str());
    for (std::size_t i = 1; i < listening.size(); ++i) {
      std::printf("Also on %s (TLS; certificate %s, token %s)\n", listening[i].c_str(),
                  o.paths.cert().c_str(), o.paths.token().c_str());
    }
  }
  return kExitOk;
}

int run_stop(const GlobalOptions& g) {
  auto paths = daemon::default_paths();
  auto pid = daemon::stop(paths, std::chrono::milliseconds(10'000));
  if (!pid.ok()) return fail(g, pid.error());
  if (g.json())
    print_json(boost::json::object{{"stopped", pid.value()}});
  else
    std::printf("Engine stopped (pid %ld)\n", pid.value());
  return kExitOk;
}

int run_status(const GlobalOptions& g) {
  auto paths = daemon::default_paths();
  std::string address = !g.host.empty() ? g.host : paths.address();
  if (g.host.empty() && !daemon::running_pid(paths)) {
    std::error_code ec;
    std::string why = std::filesystem::exists(paths.socket(), ec)
                          ? "not running (a stale socket is left at " + paths.socket().string() +
                                "; the next start replaces it)"
                          : "not running";
    return fail(g, Error(ErrorCode::unavailable, "the engine on " + address + " is " + why +
                                                     "; start it with 'modhost engine start'"));
  }
  // The daemon itself, whatever the CLI would use otherwise.
  auto remote = connect_daemon(g, address);
  if (!remote.ok()) return fail(g, remote.error());
  auto info = remote.value()->info(std::chrono::milliseconds(3000));
  if (!info.ok()) return fail(g, info.error());
  if (g.json()) {
    print_json(boost::json::object{{"running", true},
                                   {"pid", info->pid},
                                   {"version", info->version},
                                   {"backend", info->backend},
                                   {"started", info->started},
                                   {"listen", json_strings(info->listen)}});
  } else {
    std::printf("Engine %s running (pid %lld) since %s, backend %s\n", info->version.c_str(), info->pid,
                info->started.c_str(), info->backend.c_str());
    for (const auto& l : info->listen) std::printf("Listening on %s\n", l.c_str());
  }
  return kExitOk;
}

}  // namespace

void add_engine_commands(CLI::App& app, GlobalOptions& g) {
  CLI::App* eng = app.add_subcommand(
      "engine", "Run the engine as a daemon that the CLI and the SDK use (engine API over gRPC)");
  eng->require_subcommand(1);
  auto listen = std::make_shared<std::vector<std::string>>();
  const char* listen_help =
      "Also serve on tcp://HOST:PORT, with TLS and a bearer token (made at first start, kept in the engine's "
      "directory)";

  CLI::App* run =
      eng->add_subcommand("run", "Run the engine in the foreground until SIGTERM (for service managers)");
  run->add_option("--listen", *listen, listen_help);
  run->callback([&g, listen] { g_exit_code = run_foreground(g, *listen); });

  CLI::App* start =
      eng->add_subcommand("start", "Start the engine in the background and wait until it answers");
  start->add_option("--listen", *listen, listen_help);
  start->callback([&g, listen] { g_exit_code = run_start(g, *listen); });

  CLI::App* stop = eng->add_subcommand("stop", "Stop the running engine (SIGTERM, then SIGKILL after 10 s)");
  stop->callback([&g] { g_exit_code = run_stop(g); });

  CLI::App* status = eng->add_subcommand(
      "status", "Say whether the engine runs, where and since when (exit 6: not running)");
  status->callback([&g] { g_exit_code = run_status(g); });

  CLI::App* restart = eng->add_subcommand("restart", "Stop the engine if it runs, then start it");
  restart->add_option("--listen", *listen, listen_help);
  restart->callback([&g, listen] {
    auto paths = daemon::default_paths();
    if (daemon::running_pid(paths)) {
      auto pid = daemon::stop(paths, std::chrono::milliseconds(10'000));
      if (!pid.ok()) {
        g_exit_code = fail(g, pid.error());
        return;
      }
      progress(g, "Engine stopped (pid " + std::to_string(pid.value()) + ")");
    }
    g_exit_code = run_start(g, *listen);
  });
}

}  // namespace modhost::cli
