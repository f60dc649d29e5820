// `modhost service add|ls|inspect|rm|stop|start|restart|pause|unpause|kill|logs|exec|shell`.
#include <boost/json.hpp>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/cli.hpp"
#include "cli/views.hpp"
#include "engine/engine.hpp"

namespace modhost::cli {

namespace {

struct AddArgs {
  std::string enclave, name, image;
  std::vector<std::string> cmd, entrypoint, env, ports, files, labels, cap_add, security_opt;
  bool privileged = false;
  double cpus = 0;
  std::string memory;
  std::string user;
  std::string wait;
  int wait_status = 200;
  std::string wait_body;
  std::string wait_initial_delay = "0ms", wait_interval = "500ms", wait_timeout = "2s";
  int wait_retries = 60;
};

Result<ServiceConfig> build_config(const AddArgs& a) {
  ServiceConfig c;
  c.name = a.name;
  c.image = a.image;
  c.entrypoint = a.entrypoint;
  c.cmd = a.cmd;
  c.cpus = a.cpus;
  c.user = a.user;
  c.cap_add = a.cap_add;
  c.privileged = a.privileged;
  c.security_opt = a.security_opt;
  if (a.cpus < 0) return Error(ErrorCode::invalid_argument, "--cpu must not be negative");
  for (const auto& e : a.env) {
    MODHOST_ASSIGN_OR_RETURN(auto kv, parse_key_value(e, "--env"));
    c.env[kv.first] = kv.second;
  }
  for (const auto& l : a.labels) {
    MODHOST_ASSIGN_OR_RETURN(auto kv, parse_key_value(l, "--label"));
    c.labels[kv.first] = kv.second;
  }
  for (const auto& p : a.ports) {
    MODHOST_ASSIGN_OR_RETURN(PortSpec spec, parse_port_spec(p));
    for (const auto& other : c.ports) {
      if (other.name == spec.name)
        return Error(ErrorCode::invalid_argument, "port name '" + spec.name + "' is used twice");
    }
    c.ports.push_back(spec);
  }
  for (const auto& f : a.files) {
    auto colon = f.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 >= f.size() || f[colon + 1] != '/') {
      return Error(ErrorCode::invalid_argument,
                   "invalid --files '" + f + "': expected ARTIFACT:/absolute/path");
    }
    c.files.push_back({f.substr(0, colon), f.substr(colon + 1)});
  }
  if (!a.memory.empty()) {
    MODHOST_ASSIGN_OR_RETURN(c.memory_bytes, parse_memory(a.memory));
  }
  return c;
}

Result<ReadinessCheck> build_wait(const AddArgs& a) {
  MODHOST_ASSIGN_OR_RETURN(ReadinessCheck c, parse_wait_spec(a.wait));
  c.expected_status = a.wait_status;
  c.body_contains = a.wait_body;
  MODHOST_ASSIGN_OR_RETURN(c.initial_delay, parse_duration(a.wait_initial_delay, /*allow_zero=*/true));
  MODHOST_ASSIGN_OR_RETURN(c.interval, parse_duration(a.wait_interval));
  MODHOST_ASSIGN_OR_RETURN(c.timeout, parse_duration(a.wait_timeout));
  if (a.wait_retries < 1) return Error(ErrorCode::invalid_argument, "--wait-retries must be at least 1");
  c.retries = a.wait_retries;
  return c;
}

int run_add(const GlobalOptions& g, const AddArgs& a) {
  auto config = build_config(a);
  if (!config.ok()) return fail(g, config.error());
  std::optional<ReadinessCheck> wait;
  if (!a.wait.empty()) {
    auto w = build_wait(a);
    if (!w.ok()) return fail(g, w.error());
    wait = w.value();
  }
  auto enc = open_enclave(g, a.enclave);
  if (!enc.ok()) return fail(g, enc.error());
  progress(g, "Adding service '" + a.name + "' (" + a.image + ")...");
  auto s = enc->backend->add_service(enc->id, config.value());
  if (!s.ok()) return fail(g, s.error());
  if (wait) {
    progress(g, "Waiting for service '" + a.name + "' to be ready (" + a.wait + ")...");
    if (auto r = enc->backend->wait_ready(enc->id, a.name, *wait); !r.ok()) {
      // A service that never became ready is not left half-started.
      (void)enc->backend->remove_service(enc->id, a.name);
      return fail(g, r.error().context("service '" + a.name + "' was removed"));
    }
  }
  if (g.json()) {
    print_json(to_json(s.value()));
  } else {
    std::printf("Service '%s' added (%s), IP %s\n", s->name.c_str(), s->id.substr(0, 12).c_str(),
                s->ip.c_str());
    for (const auto& p : s->ports) std::printf("  %s\n", format_port(p).c_str());
  }
  return kExitOk;
}

void print_service(const ServiceInfo& s) {
  std::printf("Name:      %s\nUUID:      %s\nImage:     %s\nStatus:    %s\nIP:        %s\n", s.name.c_str(),
              s.id.c_str(), s.image.c_str(), to_string(s.status), s.ip.c_str());
  if (s.exit_code) std::printf("Exit code: %d\n", *s.exit_code);
  std::printf("Ports:\n");
  for (const auto& p : s.ports) std::printf("  %s\n", format_port(p).c_str());
  std::printf("Labels:\n");
  for (const auto& [k, v] : s.labels) std::printf("  %s=%s\n", k.c_str(), v.c_str());
}

struct Target {
  std::string enclave, name;
};

// Runs `action` on one service and reports "<verb> service 'x'".
template <typename F>
int run_on_service(const GlobalOptions& g, const Target& target, const char* verb, F action) {
  auto enc = open_enclave(g, target.enclave);
  if (!enc.ok()) return fail(g, enc.error());
  if (Status s = action(*enc->backend, enc->id); !s.ok()) return fail(g, s.error());
  if (g.json()) {
    print_json(boost::json::object{{"service", target.name}, {"action", verb}});
  } else {
    std::printf("%s service '%s'\n", verb, target.name.c_str());
  }
  return kExitOk;
}

int parse_signal(const std::string& s) {
  static const std::pair<const char*, int> names[] = {
      {"KILL", SIGKILL}, {"TERM", SIGTERM}, {"INT", SIGINT},   {"HUP", SIGHUP},  {"QUIT", SIGQUIT},
      {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"STOP", SIGSTOP}, {"CONT", SIGCONT}};
  std::string upper;
  for (char c : s) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper.rfind("SIG", 0) == 0) upper = upper.substr(3);
  for (const auto& [n, v] : names) {
    if (upper == n) return v;
  }
  int v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && ptr == s.data() + s.size() && v > 0 && v < 65 ? v : -1;
}

}  // namespace

void add_service_commands(CLI::App& app, GlobalOptions& g) {
  CLI::App* service = app.add_subcommand("service", "Add, inspect and control the services of an enclave");
  service->require_subcommand(1);

  auto a = std::make_shared<AddArgs>();
  CLI::App* add =
      service->add_subcommand("add", "Start a service in an enclave: ENCLAVE NAME IMAGE [-- CMD...]");
  add->add_option("enclave", a->enclave, "Enclave UUID, UUID prefix or name")->required();
  add->add_option("name", a->name, "Service name, unique in the enclave; other services reach it by it")
      ->required();
  add->add_option("image", a->image, "Image (load one with 'modhost image pack' or 'modhost image load')")
      ->required();
  add->add_option("cmd", a->cmd, "Command (after --)");
  add->add_option("--entrypoint", a->entrypoint, "Entrypoint, replacing the image's")->expected(1);
  add->add_option("--env,-e", a->env, "Environment variable KEY=VALUE (repeatable)")->allow_extra_args(false);
  add->add_option("--ports,-p", a->ports, "Port NAME=NUMBER[/tcp|udp], published on 127.0.0.1 (repeatable)")
      ->allow_extra_args(false);
  add->add_option("--files", a->files, "Mount files artifact ARTIFACT:/path read-only (repeatable)")
      ->allow_extra_args(false);
  add->add_option("--cpu", a->cpus, "CPU limit in cores, e.g. 0.5");
  add->add_option("--memory", a->memory, "Memory limit, e.g. 256m");
  add->add_option("--label", a->labels, "Label KEY=VALUE (repeatable)")->allow_extra_args(false);
  add->add_option("--user,-u", a->user,
                  "Run as USER[:GROUP], numbers or names from the image (default: the image's)");
  add->add_option("--cap-add", a->cap_add,
                  "Linux capability beyond the defaults, e.g. NET_ADMIN (repeatable)")
      ->allow_extra_args(false);
  add->add_flag(
      "--privileged", a->privileged,
      "Every capability, no seccomp filter, /proc and /sys unmasked and writable (docs/security.md)");
  add->add_option("--security-opt", a->security_opt,
                  "seccomp=unconfined or no-new-privileges=false, as docker run takes them (repeatable)")
      ->allow_extra_args(false);
  add->add_option("--wait", a->wait,
                  "Wait until ready: tcp:PORT, http:PORT/PATH or exec:COMMAND (PORT: name or number)");
  add->add_option("--wait-status", a->wait_status, "HTTP status that means ready")->capture_default_str();
  add->add_option("--wait-body", a->wait_body, "Text the HTTP body must contain");
  add->add_option("--wait-initial-delay", a->wait_initial_delay, "Delay before the first probe")
      ->capture_default_str();
  add->add_option("--wait-retries", a->wait_retries, "Probes before giving up")->capture_default_str();
  add->add_option("--wait-interval", a->wait_interval, "Time between probes")->capture_default_str();
  add->add_option("--wait-timeout", a->wait_timeout, "Timeout of one probe")->capture_default_str();
  add->callback([&g, a] { g_exit_code = run_add(g, *a); });

  auto enclave = std::make_shared<std::string>();
  CLI::App* ls = service->add_subcommand("ls", "List the services of an enclave");
  ls->add_option("enclave", *enclave, "Enclave UUID, UUID prefix or name")->required();
  ls->callback([&g, enclave] {
    auto enc = open_enclave(g, *enclave);
    if (!enc.ok()) return void(g_exit_code = fail(g, enc.error()));
    auto list = enc->backend->list_services(enc->id);
    if (!list.ok()) return void(g_exit_code = fail(g, list.error()));
    // Module containers are listed by 'enclave inspect', not here.
    std::erase_if(list.value(), [](const ServiceInfo& s) {
      auto k = s.labels.find(backend::kLabelKind);
      return k != s.labels.end() && k->second == "module";
    });
    if (g.json()) {
      boost::json::array arr;
      for (const auto& s : list.value()) arr.push_back(to_json(s));
      print_json(boost::json::object{{"services", arr}});
      return;
    }
    Table t({"UUID", "NAME", "STATUS", "IP", "PORTS"});
    for (const auto& s : list.value()) {
      std::string ports;
      for (const auto& p : s.ports) ports += (ports.empty() ? "" : ", ") + format_port(p);
      t.row({s.id.substr(0, 12), s.name, to_string(s.status), s.ip, ports.empty() ? "<none>" : ports});
    }
    t.print();
  });

  auto target = std::make_shared<Target>();
  auto add_target = [target](CLI::App* c) {
    c->add_option("enclave", target->enclave, "Enclave UUID, UUID prefix or name")->required();
    c->add_option("service", target->name, "Service name")->required();
  };

  CLI::App* inspect = service->add_subcommand("inspect", "Show a service: status, IP, ports, labels");
  add_target(inspect);
  inspect->callback([&g, target] {
    auto enc = open_enclave(g, target->enclave);
    if (!enc.ok()) return void(g_exit_code = fail(g, enc.error()));
    auto s = enc->backend->inspect_service(enc->id, target->name);
    if (!s.ok()) return void(g_exit_code = fail(g, s.error()));
    if (g.json())
      print_json(to_json(s.value()));
    else
      print_service(s.value());
  });

  struct Simple {
    const char* verb;
    const char* help;
    const char* done;
    Status (*action)(backend::Backend&, const std::string&, const std::string&);
  };
  static const Simple simple[] = {
      {"rm", "Remove a service (stopping it first)", "Removed",
       [](backend::Backend& b, const std::string& e, const std::string& n) {
         return b.remove_service(e, n);
       }},
      {"start", "Start a stopped service", "Started",
       [](backend::Backend& b, const std::string& e, const std::string& n) { return b.start_service(e, n); }},
      {"restart", "Restart a service", "Restarted",
       [](backend::Backend& b, const std::string& e, const std::string& n) {
         return b.restart_service(e, n);
       }},
      {"pause", "Freeze every process of a service", "Paused",
       [](backend::Backend& b, const std::string& e, const std::string& n) { return b.pause_service(e, n); }},
      {"unpause", "Thaw a paused service", "Unpaused",
       [](backend::Backend& b, const std::string& e, const std::string& n) {
         return b.unpause_service(e, n);
       }},
  };
  for (const Simple& s : simple) {
    CLI::App* c = service->add_subcommand(s.verb, s.help);
    add_target(c);
    c->callback([&g, target, &s] {
      g_exit_code = run_on_service(g, *target, s.done, [&](backend::Backend& b, const std::string& id) {
        return s.action(b, id, target->name);
      });
    });
  }

  auto grace = std::make_shared<int>(10);
  CLI::App* stop =
      service->add_subcommand("stop", "Stop a service: SIGTERM, then SIGKILL after the grace period");
  add_target(stop);
  stop->add_option("--grace,-t", *grace, "Seconds between SIGTERM and SIGKILL")->capture_default_str();
  stop->callback([&g, target, grace] {
    g_exit_code = run_on_service(g, *target, "Stopped", [&](backend::Backend& b, const std::string& id) {
      return b.stop_service(id, target->name, *grace);
    });
  });

  auto signal = std::make_shared<std::string>("KILL");
  CLI::App* kill = service->add_subcommand("kill", "Send a signal to a service's main process");
  add_target(kill);
  kill->add_option("--signal,-s", *signal, "Signal name or number")->capture_default_str();
  kill->callback([&g, target, signal] {
    int sig = parse_signal(*signal);
    if (sig < 0) {
      g_exit_code = fail(g, Error(ErrorCode::invalid_argument,
                                  "unknown signal '" + *signal + "': use e.g. KILL, TERM or 9"));
      return;
    }
    g_exit_code = run_on_service(g, *target, "Signalled", [&](backend::Backend& b, const std::string& id) {
      return b.kill_service(id, target->name, sig);
    });
  });

  auto follow = std::make_shared<bool>(false);
  CLI::App* logs = service->add_subcommand("logs", "Print a service's output");
  add_target(logs);
  logs->add_flag("--follow,-f", *follow, "Keep printing until the service ends or Ctrl-C");
  logs->callback([&g, target, follow] {
    auto enc = open_enclave(g, target->enclave);
    if (!enc.ok()) return void(g_exit_code = fail(g, enc.error()));
    Status s = enc->backend->logs(enc->id, target->name, *follow, [](std::string_view chunk) {
      std::fwrite(chunk.data(), 1, chunk.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    if (!s.ok()) g_exit_code = fail(g, s.error());
  });

  auto argv = std::make_shared<std::vector<std::string>>();
  CLI::App* exec = service->add_subcommand("exec", "Run a command in a service: ENCLAVE NAME -- ARGV...");
  add_target(exec);
  exec->add_option("argv", *argv, "Command and arguments (after --)")->required();
  exec->callback([&g, target, argv] {
    auto enc = open_enclave(g, target->enclave);
    if (!enc.ok()) return void(g_exit_code = fail(g, enc.error()));
    auto r = enc->backend->exec(enc->id, target->name, *argv);
    if (!r.ok()) return void(g_exit_code = fail(g, r.error()));
    if (g.json()) {
      print_json(boost::json::object{{"exitCode", r->exit_code}, {"output", r->output}});
    } else {
      std::fwrite(r->output.data(), 1, r->output.size(), stdout);
    }
    // The command's own exit code, as `docker exec` does.
    g_exit_code = r->exit_code;
  });

  CLI::App* shell = service->add_subcommand(
      "shell", "A line-oriented shell in a service: each line you type runs as 'sh -c LINE' (Ctrl-D ends)");
  add_target(shell);
  shell->callback([&g, target] {
    auto enc = open_enclave(g, target->enclave);
    if (!enc.ok()) return void(g_exit_code = fail(g, enc.error()));
    auto s = enc->backend->inspect_service(enc->id, target->name);
    if (!s.ok()) return void(g_exit_code = fail(g, s.error()));
    std::string line;
    while (true) {
      std::fprintf(stderr, "%s$ ", target->name.c_str());
      if (!std::getline(std::cin, line)) break;
      if (line.empty()) continue;
      auto r = enc->backend->exec(enc->id, target->name, {"sh", "-c", line});
      if (!r.ok()) {
        std::fprintf(stderr, "error: %s\n", r.error().message().c_str());
        continue;
      }
      std::fwrite(r->output.data(), 1, r->output.size(), stdout);
      std::fflush(stdout);
    }
    std::fprintf(stderr, "\n");
  });
}

}  // namespace modhost::cli
