// From a NetworkPartitioning to the rules of each service's network
// namespace, and their text for iptables-restore and the packet shaper.
// Pure functions: no I/O, unit tested.
//
// Every rule acts on packets a service receives (the INPUT hook of its own
// namespace), matched by source address: as both ends are shaped, each
// direction of a pair is handled by its receiver. (On the sender's OUTPUT
// hook a packet held in a queue still counts against the sending socket, and
// TCP slows to a few MB/s whatever the delay; on INPUT it does not.)
//   blocked           DROP
//   loss, delay, jitter
//                     NFQUEUE to modhost-netshaper, which holds or drops;
//                     one queue per peer partition, so a change of these
//                     values changes the shaper's table and no rule
//   rate              hashlimit (bytes/s above the rate) -> DROP, first
// Ours and only ours: one chain, kChain, and the jump to it from INPUT.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "modhost/partitioning.hpp"

namespace modhost::engine::partition {

inline constexpr const char* kChain = "MODHOST-PARTITION";
// NFQUEUE numbers: kQueueBase + n, n one per shaped peer partition.
inline constexpr int kQueueBase = 19784;  // 0x4d48, "MH"

struct Endpoint {
  std::string service;
  std::string ip;  // IPv4 inside the enclave network
};

// Traffic from one peer (another partition's service) into this namespace.
struct PeerRule {
  std::string ip;
  std::string partition;  // the peer's
  Connection connection;
  int queue = -1;  // NFQUEUE number when the shaper handles it
};

struct NamespaceRules {
  std::string service;
  std::string partition;
  std::vector<PeerRule> rules;  // empty: nothing of ours belongs here
  // Queue number -> the connection the shaper applies on it.
  std::map<int, Connection> queues;
};

// True when a connection needs the userspace shaper (the kernel may have no
// netem): loss, delay or jitter.
bool needs_shaper(const Connection& c);

// The rules of every endpoint, in endpoint order. `p` must be valid for them.
std::vector<NamespaceRules> compile(const NetworkPartitioning& p, const std::vector<Endpoint>& endpoints);

// What iptables-save says of ours in a namespace.
struct Installed {
  bool chain = false;
  bool jump = false;
};
Installed parse_iptables_save(std::string_view save);

// The rule lines of our chain for `rules` ("-A MODHOST-PARTITION ..."), in
// order; empty when nothing of ours belongs in the namespace.
std::string chain_rules(const NamespaceRules& rules);

// iptables-restore --noflush input that makes the namespace hold exactly
// `rules` (one transaction: packets see the old rule set or the new one),
// or removes everything of ours when `rules` is empty. Empty when nothing
// needs to change.
std::string render_restore(const NamespaceRules& rules, const Installed& installed);

}  // namespace modhost::engine::partition
