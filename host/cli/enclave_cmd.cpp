// `modhost enclave add|ls|inspect|stop|rm|dump` and `modhost clean`.
#include <boost/json.hpp>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>

#include "cli/cli.hpp"
#include "cli/views.hpp"
#include "engine/api.hpp"
#include "engine/events.hpp"

namespace modhost::cli {
namespace {

namespace fs = std::filesystem;

std::string random_enclave_name() {
  static const char* adjectives[] = {"amber", "brisk", "calm", "dusty", "eager", "fuzzy", "gentle", "hidden",
                                     "icy",   "jolly", "keen", "lucky", "misty", "noble", "quiet",  "rapid"};
  static const char* nouns[] = {"badger", "cedar",  "delta",  "falcon", "glacier", "harbor",
                                "island", "lagoon", "meadow", "nebula", "otter",   "prairie",
                                "quarry", "river",  "summit", "tundra"};
  std::random_device rd;
  std::uniform_int_distribution<int> pick(0, 15), num(100, 999);
  return std::string(adjectives[pick(rd)]) + "-" + nouns[pick(rd)] + "-" + std::to_string(num(rd));
}

int run_add(const GlobalOptions& g, const std::string& requested) {
  auto b = get_backend(g);
  if (!b.ok()) return fail(g, b.error());
  std::string name = requested.empty() ? random_enclave_name() : requested;
  progress(g, "Creating enclave '" + name + "'...");
  auto e = b.value()->create_enclave(name);
  if (!e.ok()) return fail(g, e.error());
  if (g.json()) {
    print_json(to_json(e.value()));
  } else {
    std::printf("Created enclave '%s'\nUUID: %s\nSubnet: %s\n", e->name.c_str(), e->id.c_str(),
                e->subnet.c_str());
  }
  return kExitOk;
}

int run_ls(const GlobalOptions& g) {
  auto b = get_backend(g);
  if (!b.ok()) return fail(g, b.error());
  auto list = b.value()->list_enclaves();
  if (!list.ok()) return fail(g, list.error());
  if (g.json()) {
    boost::json::array arr;
    for (const auto& e : list.value()) arr.push_back(to_json(e));
    print_json(boost::json::object{{"enclaves", arr}});
    return kExitOk;
  }
  Table t({"UUID", "NAME", "STATUS", "CREATION TIME"});
  for (const auto& e : list.value()) {
    t.row({e.id, e.name, e.complete ? status_name(e.status) : "half-made", e.created});
  }
  t.print();
  return kExitOk;
}

int run_inspect(const GlobalOptions& g, const std::string& ref) {
  auto b = get_backend(g);
  if (!b.ok()) return fail(g, b.error());
  auto e = b.value()->find_enclave(ref);
  if (!e.ok()) return fail(g, e.error());
  auto services = b.value()->list_services(e->id);
  if (!services.ok()) return fail(g, services.error());
  auto artifacts = b.value()->list_artifacts(e->id);
  if (!artifacts.ok()) return fail(g, artifacts.error());

  std::vector<ServiceInfo> plain, modules;
  for (const auto& s : services.value()) {
    auto kind = s.labels.find(backend::kLabelKind);
    (kind != s.labels.end() && kind->second == "module" ? modules : plain).push_back(s);
  }
  if (g.json()) {
    boost::json::object o = to_json(e.value());
    boost::json::array sv, mv, av;
    for (const auto& s : plain) sv.push_back(to_json(s));
    for (const auto& s : modules) mv.push_back(to_json(s));
    for (const auto& a : artifacts.value()) av.push_back(to_json(a));
    o["services"] = sv;
    o["modules"] = mv;
    o["artifacts"] = av;
    print_json(o);
    return kExitOk;
  }
  std::printf(
      "UUID:            %s\nName:            %s\nStatus:          %s\nCreation time:   %s\nSubnet:          "
      "%s\n",
      e->id.c_str(), e->name.c_str(), status_name(e->status), e->created.c_str(), e->subnet.c_str());
  auto section = [](const char* title, const std::vector<ServiceInfo>& list) {
    std::printf(
        "\n========================================== %s ==========================================\n",
        title);
    Table t({"UUID", "NAME", "STATUS", "IP", "PORTS"});
    for (const auto& s : list) {
      std::string first_port = s.ports.empty() ? "<none>" : format_port(s.ports[0]);
      t.row({s.id.substr(0, 12), s.name, to_string(s.status), s.ip, first_port});
      for (size_t i = 1; i < s.ports.size(); ++i) t.row({"", "", "", "", format_port(s.ports[i])});
    }
    t.print();
  };
  section("User Services", plain);
  section("Modules", modules);
  std::printf(
      "\n========================================== Files Artifacts "
      "==========================================\n");
  Table t({"NAME", "SIZE", "CREATION TIME"});
  for (const auto& a : artifacts.value()) t.row({a.name, std::to_string(a.size_bytes) + " B", a.created});
  t.print();
  return kExitOk;
}

int run_stop(const GlobalOptions& g, const std::string& ref) {
  auto b = get_backend(g);
  if (!b.ok()) return fail(g, b.error());
  auto e = b.value()->find_enclave(ref);
  if (!e.ok()) return fail(g, e.error());
  progress(g, "Stopping enclave '" + e->name + "'...");
  if (auto s = b.value()->stop_enclave(e->id); !s.ok()) return fail(g, s.error());
  if (g.json())
    print_json(boost::json::object{{"stopped", e->id}});
  else
    std::printf("Stopped enclave '%s'\n", e->name.c_str());
  return kExitOk;
}

int run_rm(const GlobalOptions& g, const std::vector<std::string>& refs, bool force) {
  auto b = get_backend(g);
  if (!b.ok()) return fail(g, b.error());
  boost::json::array removed;
  for (const auto& ref : refs) {
    auto e = b.value()->find_enclave(ref);
    if (!e.ok()) return fail(g, e.error());
    progress(g, "Removing enclave '" + e->name + "'...");
    if (auto s = get_api(g).value()->remove_enclave(e->id, force); !s.ok()) return fail(g, s.error());
    removed.push_back(boost::json::string(e->id));
    if (!g.json()) std::printf("Removed enclave '%s' (%s)\n", e->name.c_str(), e->id.c_str());
  }
  if (g.json()) print_json(boost::json::object{{"removed", removed}});
  return kExitOk;
}

Status write_file(const fs::path& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!out) return Error(ErrorCode::unavailable, "cannot write '" + path.string() + "'");
  return ok_status();
}

// 2026-11-23T17:40:01.123456Z
std::string format_event_time(std::int64_t ns) {
  const std::time_t secs = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[40];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%.*s.%06lldZ", static_cast<int>(n), buf,
                static_cast<long long>((ns % 1'000'000'000) / 1000));
  return out;
}

int run_events(const GlobalOptions& g, const std::string& ref, bool follow) {
  auto target = open_enclave(g, ref);
  if (!target.ok()) return fail(g, target.error());
  auto api = get_api(g);
  if (!api.ok()) return fail(g, api.error());
  boost::json::array all;
  auto to_json = [](const engine::TimelineEvent& e) {
    boost::json::object o{{"time", format_event_time(e.time_ns)},
                          {"kind", e.kind},
                          {"subject", e.subject},
                          {"action", e.action}};
    boost::json::object attrs;
    for (const auto& [k, v] : e.attributes) attrs[k] = v;
    if (!attrs.empty()) o["attributes"] = std::move(attrs);
    return o;
  };
  Status s = api.value()->timeline(target->id, follow, [&](const engine::TimelineEvent& e) {
    if (g.json()) {
      // Followed: one object per line as it happens; otherwise one array.
      if (follow) {
        std::printf("%s\n", boost::json::serialize(to_json(e)).c_str());
      } else {
        all.push_back(to_json(e));
      }
    } else {
      std::string attrs;
      for (const auto& [k, v] : e.attributes) attrs += " " + k + "=" + v;
      std::printf("%s  %-8s %-20s %s%s\n", format_event_time(e.time_ns).c_str(), e.kind.c_str(),
                  e.subject.c_str(), e.action.c_str(), attrs.c_str());
    }
    std::fflush(stdout);
    return true;
  });
  if (!s.ok()) return fail(g, s.error());
  if (g.json() && !follow) print_json(all);
  return kExitOk;
}

int run_dump(const GlobalOptions& g, const std::string& ref, const std::string& dir) {
  auto b = get_backend(g);
  if (!b.ok()) return fail(g, b.error());
  auto e = b.value()->find_enclave(ref);
  if (!e.ok()) return fail(g, e.error());
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    return fail(g, Error(ErrorCode::already_exists, "dump directory '" + dir + "' exists and is not empty"));
  }
  auto services = b.value()->list_services(e->id);
  if (!services.ok()) return fail(g, services.error());
  auto artifacts = b.value()->list_artifacts(e->id);
  if (!artifacts.ok()) return fail(g, artifacts.error());
  fs::create_directories(fs::path(dir) / "services", ec);
  if (ec) return fail(g, Error(ErrorCode::unavailable, "cannot create '" + dir + "': " + ec.message()));

  boost::json::object enclave = to_json(e.value());
  boost::json::array av;
  for (const auto& a : artifacts.value()) av.push_back(to_json(a));
  enclave["artifacts"] = av;
  if (auto s = write_file(fs::path(dir) / "enclave.json", boost::json::serialize(enclave)); !s.ok())
    return fail(g, s.error());
  for (const auto& s : services.value()) {
    progress(g, "Dumping service '" + s.name + "'...");
    fs::path sdir = fs::path(dir) / "services" / s.name;
    fs::create_directories(sdir, ec);
    if (auto w = write_file(sdir / "spec.json", boost::json::serialize(to_json(s))); !w.ok())
      return fail(g, w.error());
    std::string logs;
    Status l = b.value()->logs(e->id, s.name, false, [&](std::string_view chunk) {
      logs.append(chunk);
      return true;
    });
    if (!l.ok()) logs = "could not read logs: " + l.error().message() + "\n";
    if (auto w = write_file(sdir / "output.log", logs); !w.ok()) return fail(g, w.error());
  }
  if (g.json())
    print_json(boost::json::object{{"enclave", e->id}, {"directory", dir}, {"services", services->size()}});
  else
    std::printf("Dumped enclave '%s' (%zu services) to %s\n", e->name.c_str(), services->size(), dir.c_str());
  return kExitOk;
}

int run_clean(const GlobalOptions& g, bool all) {
  auto b = get_backend(g);
  if (!b.ok()) return fail(g, b.error());
  progress(g, all ? "Removing every enclave and anything half-made..."
                  : "Removing stopped enclaves and anything half-made...");
  auto report = get_api(g).value()->clean(all);
  if (!report.ok()) return fail(g, report.error());
  if (g.json()) {
    boost::json::array arr;
    for (const auto& r : report->removed) arr.push_back(boost::json::string(r));
    print_json(boost::json::object{{"removed", arr}});
  } else {
    for (const auto& r : report->removed) std::printf("Removed %s\n", r.c_str());
    std::printf("%zu resource(s) removed\n", report->removed.size());
  }
  return kExitOk;
}

}  // namespace

void add_enclave_commands(CLI::App& app, GlobalOptions& g) {
  CLI::App* enclave = app.add_subcommand("enclave", "Create, list, inspect and remove enclaves");
  enclave->require_subcommand(1);

  auto name = std::make_shared<std::string>();
  CLI::App* add = enclave->add_subcommand("add", "Create an enclave: its own network, isolated from others");
  add->add_option("--name,-n", *name, "Enclave name (default: a generated one)");
  add->callback([&g, name] { g_exit_code = run_add(g, *name); });

  enclave->add_subcommand("ls", "List enclaves")->callback([&g] { g_exit_code = run_ls(g); });

  auto ref = std::make_shared<std::string>();
  CLI::App* inspect =
      enclave->add_subcommand("inspect", "Show an enclave's services, modules and files artifacts");
  inspect->add_option("enclave", *ref, "Enclave UUID, UUID prefix or name")->required();
  inspect->callback([&g, ref] { g_exit_code = run_inspect(g, *ref); });

  CLI::App* stop = enclave->add_subcommand("stop", "Stop every service of an enclave (the enclave stays)");
  stop->add_option("enclave", *ref, "Enclave UUID, UUID prefix or name")->required();
  stop->callback([&g, ref] { g_exit_code = run_stop(g, *ref); });

  auto refs = std::make_shared<std::vector<std::string>>();
  auto force = std::make_shared<bool>(false);
  CLI::App* rm = enclave->add_subcommand("rm", "Remove enclaves with their services and artifacts");
  rm->add_option("enclaves", *refs, "Enclave UUIDs, UUID prefixes or names")->required();
  rm->add_flag("--force,-f", *force, "Remove even when services are running");
  rm->callback([&g, refs, force] { g_exit_code = run_rm(g, *refs, *force); });

  auto dir = std::make_shared<std::string>();
  CLI::App* dump =
      enclave->add_subcommand("dump", "Write an enclave's spec and every service's spec and logs to DIR");
  dump->add_option("enclave", *ref, "Enclave UUID, UUID prefix or name")->required();
  dump->add_option("dir", *dir, "Output directory (must not exist, or be empty)")->required();
  dump->callback([&g, ref, dir] { g_exit_code = run_dump(g, *ref, *dir); });

  auto follow = std::make_shared<bool>(false);
  CLI::App* events = enclave->add_subcommand(
      "events",
      "What happened in an enclave: services started, killed, paused, ...; partitions applied and healed");
  events->add_option("enclave", *ref, "Enclave UUID, UUID prefix or name")->required();
  events->add_flag("--follow,-f", *follow, "Keep printing new events until interrupted");
  events->callback([&g, ref, follow] { g_exit_code = run_events(g, *ref, *follow); });
}

void add_clean_command(CLI::App& app, GlobalOptions& g) {
  auto all = std::make_shared<bool>(false);
  CLI::App* clean =
      app.add_subcommand("clean", "Remove stopped enclaves and anything a crash left half-made");
  clean->add_flag("--all,-a", *all, "Remove every enclave, running ones too");
  clean->callback([&g, all] { g_exit_code = run_clean(g, *all); });
}

}  // namespace modhost::cli
