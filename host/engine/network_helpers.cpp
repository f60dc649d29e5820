// Network control of an engine that runs elsewhere (a remote Docker): its
// services' namespaces cannot be entered from this host, so each service
// gets a helper container in its namespace, with NET_ADMIN, the packed
// modhost/netctl image (iptables and the shaper). Rules go in by exec, the
// shaper's table by a copy and SIGHUP.
#include <signal.h>

#include <boost/json.hpp>
#include <set>
#include <thread>

#include "backends/image/image.hpp"
#include "engine/module_manager.hpp"
#include "engine/network_parts.hpp"

namespace modhost::engine::netctl {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr const char* kHelperImage = "modhost/netctl:1";
constexpr const char* kHelperArchive = "modhost-netctl.tar";
constexpr const char* kHelperShaperConfig = "/shaper.json";
constexpr const char* kHelperApplied = "/shaper.applied";

std::string base64(std::string_view in) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char ch : in) {
    acc = (acc << 8) | ch;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 0x3f];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 0x3f];
  while (out.size() % 4 != 0) out += '=';
  return out;
}

}  // namespace

Status Helpers::ensure_image() const {
  MODHOST_ASSIGN_OR_RETURN(bool present, backend_.image_exists(kHelperImage));
  if (present) return ok_status();
  // Packed by the build; installed under share/modhost/images.
  const fs::path bin(executable_dir());
  for (const fs::path& archive : {bin / ".." / "images" / kHelperArchive,
                                  bin / ".." / "share" / "modhost" / "images" / kHelperArchive}) {
    if (fs::exists(archive)) return backend_.load_image(archive.string());
  }
  return Error(ErrorCode::failed_precondition,
               std::string("network control of a remote engine needs the image ") + kHelperImage +
                   ", and no " + kHelperArchive + " is next to modhost to load it from");
}

bool Helpers::running(const std::string& enclave_id, const std::string& helper) const {
  auto h = backend_.inspect_service(enclave_id, helper);
  return h.ok() && h->status == ServiceStatus::running;
}

Status Helpers::start(const std::string& enclave_id, const std::vector<Target>& ts) const {
  std::set<std::string> up;
  for (const Target& t : ts) {
    if (running(enclave_id, t.helper)) up.insert(t.helper);
  }
  bool image_checked = false;
  for (const Target& t : ts) {
    if (up.contains(t.helper)) continue;
    if (!image_checked) MODHOST_TRY(ensure_image());
    image_checked = true;
    (void)backend_.remove_service(enclave_id, t.helper);  // a stopped one, if any
    ServiceConfig c;
    c.name = t.helper;
    c.kind = "helper";
    c.image = kHelperImage;
    c.network_of = t.service;
    c.cap_add = {"NET_ADMIN"};
    c.env["MODHOST_SHAPER_CONFIG"] = json::serialize(
        json::object{{"generation", 0}, {"namespaces", json::array{shaper_namespace(1, {})}}});
    c.entrypoint = {"/bin/sh", "-c",
                    std::string("echo \"$MODHOST_SHAPER_CONFIG\" > ") + kHelperShaperConfig +
                        " && exec /bin/modhost-netshaper --config " + kHelperShaperConfig +
                        " --pid-file /shaper.pid --applied-file " + kHelperApplied};
    auto added = backend_.add_service(enclave_id, c);
    if (!added.ok())
      return added.error().context("cannot start the network helper of service '" + t.service + "'");
  }
  return ok_status();
}

void Helpers::remove(const std::string& enclave_id, const std::vector<Target>& ts) const {
  for (const Target& t : ts) {
    if (!t.helper.empty()) (void)backend_.remove_service(enclave_id, t.helper);
  }
}

Result<CommandOutput> Helpers::run(const std::string& enclave_id, const Target& t,
                                   const std::vector<std::string>& argv, std::string_view input) const {
  std::vector<std::string> cmd;
  const std::string name = fs::path(argv[0]).filename().string();
  if (input.empty()) {
    cmd = argv;
    cmd[0] = name;
  } else {
    // The exec API has no stdin: the input travels in base64 in the command.
    std::string line = "echo " + base64(input) + " | base64 -d | " + name;
    for (std::size_t i = 1; i < argv.size(); ++i) line += " " + argv[i];
    cmd = {"sh", "-c", line};
  }
  MODHOST_ASSIGN_OR_RETURN(ExecResult r, backend_.exec(enclave_id, t.helper, cmd));
  return CommandOutput{r.exit_code, r.output, r.output};
}

Status Helpers::reload_shapers(const std::string& enclave_id, const std::vector<Target>& ts,
                               const std::vector<partition::NamespaceRules>& rules) const {
  const auto generation = static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                        std::chrono::system_clock::now().time_since_epoch())
                                                        .count());
  return parallel(ts.size(), parallelism_, [&](std::size_t i) -> Status {
    const Target& t = ts[i];
    json::object config{{"generation", generation},
                        {"seed", fresh_seed()},
                        {"namespaces", json::array{shaper_namespace(1, rules[i])}}};
    MODHOST_TRY(backend_.copy_to_service(enclave_id, t.helper, "/", [&] {
      image::TarWriter tar;
      tar.add_file(fs::path(kHelperShaperConfig).filename().string(), json::serialize(config), 0644);
      return tar.finish();
    }()));
    MODHOST_TRY(backend_.kill_service(enclave_id, t.helper, SIGHUP));
    for (auto deadline = std::chrono::steady_clock::now() + timeout_;;) {
      MODHOST_ASSIGN_OR_RETURN(ExecResult r, backend_.exec(enclave_id, t.helper, {"cat", kHelperApplied}));
      if (r.exit_code == 0 && r.output == std::to_string(generation)) return ok_status();
      if (std::chrono::steady_clock::now() > deadline) {
        return Error(ErrorCode::timeout,
                     "the packet shaper of service '" + t.service + "' did not take its rules");
      }
      std::this_thread::sleep_for(10ms);
    }
  });
}

}  // namespace modhost::engine::netctl
