// `modhost run PACKAGE|SCRIPT [ARGS]`: a Starlark package or script as
// `kurtosis run` runs it. Interpreted here (modhost-starlark), validated and
// executed by the engine, in this process or in the daemon.
#include <boost/json.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "cli/cancel_on_signal.hpp"
#include "cli/cli.hpp"
#include "cli/views.hpp"
#include "engine/api.hpp"
#include "starlark/interpret.hpp"
#include "starlark/plan.hpp"
#include "starlark/run.hpp"

namespace modhost::cli {
namespace {

namespace json = boost::json;

struct RunArgs {
  std::string path;
  std::string args;
  std::string args_file;
  std::string enclave;
  std::string main_file = "main.star";
  std::string main_function = "run";
  std::vector<std::string> package_dirs;
  bool dry_run = false;
  int parallelism = 4;
  std::string verbosity = "description";
  bool show_enclave = true;
  bool no_skip = false;
  std::uint64_t max_steps = 10'000'000;
};

// "pretty" JSON with a tab indent, as Kurtosis prints a run's output.
void pretty(std::ostringstream& out, const json::value& v, int depth) {
  const std::string pad(static_cast<std::size_t>(depth + 1), '\t'),
      end(static_cast<std::size_t>(depth), '\t');
  if (v.is_object() && !v.get_object().empty()) {
    out << "{\n";
    bool first = true;
    for (const auto& [k, e] : v.get_object()) {
      out << (first ? "" : ",\n") << pad << json::serialize(json::string(k)) << ": ";
      pretty(out, e, depth + 1);
      first = false;
    }
    out << "\n" << end << "}";
  } else if (v.is_array() && !v.get_array().empty()) {
    out << "[\n";
    bool first = true;
    for (const auto& e : v.get_array()) {
      out << (first ? "" : ",\n") << pad;
      pretty(out, e, depth + 1);
      first = false;
    }
    out << "\n" << end << "]";
  } else {
    out << json::serialize(v);
  }
}

std::map<std::string, std::string> app_protocols(const ServiceInfo& s) {
  std::map<std::string, std::string> out;
  auto l = s.labels.find(starlark::kLabelAppProtocols);
  if (l == s.labels.end()) return out;
  std::istringstream in(l->second);
  for (std::string item; std::getline(in, item, ',');) {
    auto eq = item.find('=');
    if (eq != std::string::npos) out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

// "postgresql: 5432/tcp -> postgresql://127.0.0.1:49153"
std::string port_text(const PublishedPort& p, const std::map<std::string, std::string>& protocols) {
  std::string s = p.port.name + ": " + std::to_string(p.port.number) + "/" + p.port.protocol;
  if (p.host_port == 0) return s;
  auto proto = protocols.find(p.port.name);
  return s + " -> " + (proto == protocols.end() ? "" : proto->second + "://") + p.host_ip + ":" +
         std::to_string(p.host_port);
}

void print_enclave(backend::Backend& b, const std::string& id) {
  auto e = b.find_enclave(id);
  if (!e.ok()) return;
  std::printf("Name:            %s\nUUID:            %s\nStatus:          %s\nCreation Time:   %s\n",
              e->name.c_str(), e->id.substr(0, 12).c_str(), status_name(e->status), e->created.c_str());
  std::printf(
      "\n========================================= Files Artifacts "
      "=========================================\n");
  Table a({"Name", "Size"});
  if (auto list = b.list_artifacts(id); list.ok()) {
    for (const auto& x : list.value()) {
      if (x.name != starlark::kRecordArtifact) a.row({x.name, std::to_string(x.size_bytes) + " B"});
    }
  }
  a.print();
  std::printf(
      "\n========================================== User Services "
      "==========================================\n");
  Table t({"UUID", "Name", "Ports", "Status"});
  if (auto list = b.list_services(id); list.ok()) {
    for (const auto& s : list.value()) {
      auto kind = s.labels.find(backend::kLabelKind);
      if (kind != s.labels.end() && kind->second != "service") continue;
      const auto protocols = app_protocols(s);
      t.row({s.id.substr(0, 12), s.name, s.ports.empty() ? "<none>" : port_text(s.ports[0], protocols),
             to_string(s.status)});
      for (std::size_t k = 1; k < s.ports.size(); ++k) t.row({"", "", port_text(s.ports[k], protocols), ""});
    }
  }
  t.print();
}

Result<std::string> read_text(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Error(ErrorCode::invalid_argument, std::string("cannot read the ") + what + " '" + path + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

int run_starlark(const GlobalOptions& g, const RunArgs& a) {
  // Interpret.
  starlark::InterpretRequest ir;
  ir.path = a.path;
  ir.main_file = a.main_file;
  ir.main_function = a.main_function;
  ir.package_dirs = a.package_dirs;
  ir.max_steps = a.max_steps;
  if (!a.args.empty() && !a.args_file.empty()) {
    return fail(
        g, Error(ErrorCode::invalid_argument, "give the args either inline or with --args-file, not both"));
  }
  ir.args_json = a.args.empty() ? "{}" : a.args;
  if (!a.args_file.empty()) {
    auto text = read_text(a.args_file, "args file");
    if (!text.ok()) return fail(g, text.error());
    ir.args_json = text.value();
  }
  auto plan_json = starlark::interpret(ir);
  if (!plan_json.ok()) return fail(g, plan_json.error());
  auto plan = starlark::parse_plan(plan_json.value());
  if (!plan.ok()) return fail(g, plan.error());

  // Execute.
  auto api = get_api(g);
  if (!api.ok()) return fail(g, api.error());
  engine::StarlarkRunRequest r;
  r.enclave = a.enclave;
  r.plan_json = std::move(plan_json).value();
  r.dry_run = a.dry_run;
  r.parallelism = a.parallelism;
  r.skip_applied = !a.no_skip;

  const std::size_t n = plan->instructions.size();
  std::vector<std::string> status(n, a.dry_run ? "planned" : "not run"), results(n);
  auto sink = [&](const engine::StarlarkRunEvent& e) {
    using K = engine::StarlarkRunEvent::Kind;
    if (e.kind == K::progress) {
      progress(g, e.text);
      return;
    }
    if (e.index >= n) return;
    const starlark::Instruction& i = plan->instructions[e.index];
    if (e.kind == K::result) {
      status[e.index] = "executed";
      results[e.index] = e.text;
    } else if (e.kind == K::skipped) {
      status[e.index] = "skipped";
    }
    if (g.json()) return;
    if (e.kind == K::instruction) {
      if (a.verbosity == "brief") {
        std::printf("> %s\n", i.text.c_str());
      } else if (a.verbosity == "detailed") {
        std::printf("> %s  [%s]\n", i.text.c_str(), i.position.c_str());
      } else {
        std::printf("%s\n", i.description.empty() ? ("> " + i.text).c_str() : i.description.c_str());
      }
      if (a.dry_run) std::printf("\n");
    } else {
      std::printf("%s\n\n", e.text.c_str());
    }
    std::fflush(stdout);
  };
  engine::CancelToken cancel;
  engine::StarlarkRunOutcome out;
  {
    CancelOnSignal on_signal(cancel);
    out = api.value()->run_starlark(r, sink, cancel);
  }

  if (g.json()) {
    json::array list;
    for (const auto& i : plan->instructions) {
      list.push_back(json::object{{"index", i.index},
                                  {"kind", i.kind},
                                  {"position", i.position},
                                  {"description", i.description},
                                  {"status", status[i.index]},
                                  {"result", results[i.index]}});
    }
    json::object o{
        {"enclave",
         json::object{{"id", out.enclave_id}, {"name", out.enclave_name}, {"created", out.enclave_created}}},
        {"dryRun", a.dry_run},
        {"executed", out.executed},
        {"skipped", out.skipped},
        {"instructions", std::move(list)}};
    if (!out.status.ok()) {
      const int code = exit_code_for(out.status.error().code());
      o["error"] = json::object{{"code", std::string(to_string(out.status.error().code()))},
                                {"message", out.status.error().message()},
                                {"exitCode", code}};
      print_json(o);
      return code;
    }
    boost::system::error_code ec;
    o["output"] = json::parse(out.output_json, ec);
    json::array services;
    if (!out.enclave_id.empty()) {
      auto b = api.value()->backend();
      if (b.ok()) {
        if (auto found = b.value()->list_services(out.enclave_id); found.ok()) {
          for (const auto& s : found.value()) services.push_back(to_json(s));
        }
      }
    }
    o["services"] = std::move(services);
    print_json(o);
    return kExitOk;
  }

  if (!out.status.ok()) {
    std::printf("Error encountered running Starlark code.\n");
    std::fflush(stdout);
    const int code = fail(g, out.status.error());
    if (!out.enclave_id.empty()) {
      progress(g, "The enclave '" + out.enclave_name +
                      "' is kept as it is; inspect it with 'modhost enclave inspect " + out.enclave_name +
                      "'");
    }
    return code;
  }
  if (out.skipped > 0) {
    std::printf("%zu of %zu instructions skipped: already applied in enclave '%s' by an earlier run.\n\n",
                out.skipped, n, out.enclave_name.c_str());
  }
  if (a.dry_run) {
    std::printf(
        "Starlark code successfully run in dry-run mode. %zu instructions validated; nothing was changed.\n",
        n);
    return kExitOk;
  }
  boost::system::error_code ec;
  json::value output = json::parse(out.output_json, ec);
  if (ec || output.is_null()) {
    std::printf("Starlark code successfully run. No output was returned.\n");
  } else {
    std::ostringstream s;
    pretty(s, output, 0);
    std::printf("Starlark code successfully run. Output was:\n%s\n", s.str().c_str());
  }
  if (a.show_enclave && !out.enclave_id.empty()) {
    std::printf("\n");
    if (auto b = api.value()->backend(); b.ok()) print_enclave(*b.value(), out.enclave_id);
  }
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace

void add_run_command(CLI::App& app, GlobalOptions& g) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* run = app.add_subcommand(
      "run",
      "Run a Starlark package or script (def run(plan, args)) in an enclave, as `kurtosis run` does:\n"
      "interpret it, validate the whole plan, then execute it instruction by instruction");
  run->add_option("package", a->path,
                  "A package folder (with kurtosis.yml), its kurtosis.yml, or a .star script")
      ->required();
  run->add_option("args", a->args, "The args, a JSON object (e.g. '{\"name\": \"x\"}')");
  run->add_option("--args-file", a->args_file, "Read the args (a JSON object) from this file");
  run->add_option("--enclave", a->enclave, "Run in this enclave (made when absent); default: a new one");
  run->add_option("--main-file", a->main_file, "The package's main file")->capture_default_str();
  run->add_option("--main-function-name", a->main_function, "The function to run")->capture_default_str();
  run->add_option("--package-dir", a->package_dirs,
                  "Where other packages are found (a package, or a folder of them); repeatable; also "
                  "$MODHOST_PACKAGES")
      ->take_all();
  run->add_flag("--dry-run", a->dry_run,
                "Validate the plan against the enclave and print it; change nothing");
  run->add_option("--parallelism", a->parallelism, "Services plan.add_services starts at once")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  run->add_option("--verbosity,-v", a->verbosity,
                  "How instructions are shown: brief, description or detailed")
      ->check(CLI::IsMember({"brief", "description", "detailed"}))
      ->capture_default_str();
  run->add_option("--show-enclave-inspect", a->show_enclave, "Show the enclave's services after the run")
      ->capture_default_str();
  run->add_flag("--no-skip", a->no_skip, "Execute again instructions an earlier run applied to the enclave");
  run->add_option("--max-steps", a->max_steps, "Starlark steps the interpretation may take")
      ->capture_default_str();
  run->callback([&g, a] { g_exit_code = run_starlark(g, *a); });
}

}  // namespace modhost::cli
