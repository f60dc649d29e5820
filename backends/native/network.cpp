#include "backends/native/network.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <mutex>

#include "backends/native/netlink.hpp"
#include "backends/native/support.hpp"
#include "backends/net.hpp"

namespace modhost::backend::native {
namespace {

// With br_netfilter loaded (Docker loads it), bridged packets pass the
// host's FORWARD chain, whose policy Docker sets to DROP: an enclave's own
// traffic, bridge to same bridge, needs a rule there.
bool bridge_netfilter() {
  return read_file("/proc/sys/net/bridge/bridge-nf-call-iptables").rfind('1', 0) == 0;
}

// One rule for every enclave: frames bridged by a modhost bridge from one of
// its ports to another. A frame one bridge passes to another is routed, not
// bridged, so enclaves stay apart (and the bridges forward nothing anyway).
// One rule, not one per enclave, keeps iptables (milliseconds a call) out of
// enclave add and rm.
std::vector<std::string> forward_rule(const std::string& op) {
  return {"iptables",
          "-w",
          op,
          "FORWARD",
          "-i",
          "mhb+",
          "-o",
          "mhb+",
          "-m",
          "physdev",
          "--physdev-is-bridged",
          "-m",
          "comment",
          "--comment",
          "modhost bridges",
          "-j",
          "ACCEPT"};
}

// The FORWARD rule matches every modhost bridge on the host, whatever its
// runtime directory: its lock is one for the host.
constexpr const char* kForwardRuleLock = "/run/modhost/.forward-rule.lock";

std::mutex& forward_rule_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

Result<std::pair<std::string, std::string>> allocate_subnet(const std::set<std::string>& used) {
  MODHOST_ASSIGN_OR_RETURN(std::vector<std::string> host_addresses, netlink::list_addresses());
  for (int third = 0; third < 256; ++third) {
    const std::string base = "10.213." + std::to_string(third) + ".";
    const std::string subnet = base + "0/24";
    if (used.count(subnet)) continue;
    bool clash = false;
    for (const auto& a : host_addresses) {
      const std::string ip = a.substr(0, a.find('/'));
      if (ip_in_subnet(ip, subnet) || ip_in_subnet(base + "1", a)) clash = true;
    }
    if (!clash) return std::pair<std::string, std::string>{subnet, base + "1"};
  }
  return Error(ErrorCode::failed_precondition, "no free subnet left in 10.213.0.0/16 for a new enclave");
}

Result<std::string> free_address(const EnclaveInfo& e, const std::set<std::string>& used) {
  const std::string base = e.subnet.substr(0, e.subnet.rfind('.') + 1);
  for (int host = 2; host < 255; ++host) {
    const std::string ip = base + std::to_string(host);
    if (!used.count(ip)) return ip;
  }
  return Error(ErrorCode::failed_precondition, "enclave '" + e.name + "' has no free address left");
}

Status make_bridge(const std::string& bridge, const std::string& label, const std::string& gateway) {
  Status s = netlink::create_bridge(bridge);
  if (s.ok()) s = netlink::set_alias(bridge, label);
  if (s.ok()) s = netlink::add_address(bridge, gateway, 24);
  if (s.ok()) s = netlink::set_up(bridge);
  if (s.ok()) {
    std::ofstream forwarding("/proc/sys/net/ipv4/conf/" + bridge + "/forwarding");
    forwarding << "0";
    forwarding.flush();
    if (!forwarding) s = Error(ErrorCode::internal, "cannot turn forwarding off on bridge " + bridge);
  }
  return s;
}

void write_hosts_file(const std::string& path,
                      const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  for (const auto& [ip, name] : entries) text += ip + "\t" + name + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size())) {
    (void)::ftruncate(fd, static_cast<off_t>(text.size()));
  }
  ::close(fd);
}

Status delete_links(std::vector<std::string> links, bool detached, const std::string& spawn_binary) {
  std::erase_if(links, [](const std::string& l) { return !netlink::link_exists(l); });
  if (links.empty()) return ok_status();
  if (detached) {
    for (const auto& l : links) {
      if (l.rfind("mhv", 0) == 0) (void)netlink::set_down(l);
    }
    std::vector<std::string> argv{spawn_binary, "delete-link"};
    argv.insert(argv.end(), links.begin(), links.end());
    if (run_detached(argv)) return ok_status();
  }
  for (const auto& l : links) MODHOST_TRY(netlink::delete_link(l));
  return ok_status();
}

Status ensure_forward_rule() {
  if (!bridge_netfilter()) return ok_status();
  DirLock global(forward_rule_mutex(), kForwardRuleLock);
  if (run_program(forward_rule("-C")) == 0) return ok_status();
  std::string out;
  if (run_program(forward_rule("-I"), &out) != 0) {
    return Error(ErrorCode::failed_precondition,
                 "cannot let the enclave's traffic through iptables' FORWARD chain: " + out);
  }
  return ok_status();
}

void remove_forward_rule_if_unused() {
  DirLock global(forward_rule_mutex(), kForwardRuleLock);
  auto links = netlink::list_links();
  if (!links.ok()) return;
  for (const auto& l : links.value()) {
    if (l.name.rfind("mhb", 0) == 0) return;
  }
  for (int copies = 0; copies < 16 && run_program(forward_rule("-D")) == 0; ++copies) {
  }
}

}  // namespace modhost::backend::native
