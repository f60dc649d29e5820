// The network of native enclaves on the host's side: a bridge per enclave
// (named from its id, labelled with its scope), veth pairs named from the
// service's id, addresses from 10.213.0.0/16, the enclave's hosts file, and
// the one iptables FORWARD rule that lets bridged enclave traffic through.
// Inside the container, modhost-spawn (spawn_container.cpp) moves the peer into
// the service's namespace and addresses it.
#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "backends/backend.hpp"

namespace modhost::backend::native {

// Link names: at most 15 bytes, so 12 characters of the id.
inline std::string bridge_name(const std::string& enclave_id) { return "mhb" + enclave_id.substr(0, 12); }
inline std::string veth_name(const std::string& service_id) { return "mhv" + service_id.substr(0, 12); }
inline std::string peer_name(const std::string& service_id) { return "mhp" + service_id.substr(0, 12); }

// A subnet (a.b.c.0/24) and its gateway for a new enclave: one no enclave in
// USED has and that no address on the host falls into.
Result<std::pair<std::string, std::string>> allocate_subnet(const std::set<std::string>& used);

// The first address of enclave E's subnet (from .2) not in USED (the
// caller's, the gateway among them).
Result<std::string> free_address(const EnclaveInfo& e, const std::set<std::string>& used);

// Makes an enclave's bridge BRIDGE, labelled LABEL, with GATEWAY/24, up, and
// routing nothing: a service that crafts frames to the gateway (it has
// CAP_NET_RAW) reaches no other network.
Status make_bridge(const std::string& bridge, const std::string& label, const std::string& gateway);

// Rewrites an enclave's /etc/hosts in place (the file is bind-mounted into
// every service, so its inode must stay): localhost, then each (ip, name).
void write_hosts_file(const std::string& path,
                      const std::vector<std::pair<std::string, std::string>>& entries);

// Deletes links (veths before the bridge they are on). The kernel takes
// 15-50 ms to unregister a link (it waits out RCU grace periods on every
// CPU); `detached` hands that wait to a helper process and returns at once.
// A bridge keeps its label until it is gone, so recover() and clean()
// still see it should the helper fail. A veth handed over is down first:
// its service's address may go to the next service at once, while the
// old network namespace, dismantled later by the kernel, still holds it;
// down, it answers nothing on the bridge (never two answers to one ARP
// request), and the bridge forgets its port.
// `spawn_binary` is modhost-spawn, whose `delete-link` does the detached work.
Status delete_links(std::vector<std::string> links, bool detached, const std::string& spawn_binary);

// Lets bridged enclave traffic through FORWARD when br_netfilter would
// send it there. Checked and inserted under the rule's host-wide lock (no
// second copy), after the caller's bridge exists (clean() keeps the rule
// while any bridge does).
Status ensure_forward_rule();

// Deletes the rule when no modhost bridge (of any scope) is left.
void remove_forward_rule_if_unused();

}  // namespace modhost::backend::native
