#include "engine/partition_rules.hpp"

#include <cstdio>
#include <set>

namespace modhost::engine::partition {

bool needs_shaper(const Connection& c) {
  if (c.blocked) return false;
  return c.delay.count() > 0 || c.jitter.count() > 0 || c.loss_percent > 0;
}

std::vector<NamespaceRules> compile(const NetworkPartitioning& p, const std::vector<Endpoint>& endpoints) {
  std::vector<std::string> names;
  for (const Endpoint& e : endpoints) names.push_back(e.service);
  const std::map<std::string, std::string> part = partition_of(p, names);

  std::vector<NamespaceRules> out;
  for (const Endpoint& self : endpoints) {
    NamespaceRules ns;
    ns.service = self.service;
    ns.partition = part.at(self.service);
    // Queues by peer partition name: stable while the set of shaped
    // partitions stays, so an update of one pair keeps the others' queues.
    std::set<std::string> shaped_partitions;
    for (const Endpoint& peer : endpoints) {
      const std::string& dp = part.at(peer.service);
      if (dp == ns.partition) continue;
      if (needs_shaper(connection_between(p, ns.partition, dp))) shaped_partitions.insert(dp);
    }
    std::map<std::string, int> queue_of;
    int n = 0;
    for (const std::string& dp : shaped_partitions) queue_of[dp] = kQueueBase + 1 + n++;

    for (const Endpoint& peer : endpoints) {
      const std::string& dp = part.at(peer.service);
      if (dp == ns.partition || peer.ip.empty()) continue;
      Connection c = connection_between(p, ns.partition, dp);
      if (!c.shaped()) continue;
      PeerRule r{peer.ip, dp, c, -1};
      if (auto q = queue_of.find(dp); q != queue_of.end()) {
        r.queue = q->second;
        ns.queues[q->second] = c;
      }
      ns.rules.push_back(std::move(r));
    }
    out.push_back(std::move(ns));
  }
  return out;
}

Installed parse_iptables_save(std::string_view save) {
  Installed i;
  const std::string chain_line = std::string(":") + kChain + " ";
  const std::string jump_line = std::string("-A INPUT -j ") + kChain;
  std::size_t start = 0;
  while (start < save.size()) {
    std::size_t end = save.find('\n', start);
    if (end == std::string_view::npos) end = save.size();
    std::string_view line = save.substr(start, end - start);
    if (line.substr(0, chain_line.size()) == chain_line) i.chain = true;
    if (line == jump_line) i.jump = true;
    start = end + 1;
  }
  return i;
}

namespace {

// A short name per peer (the kernel takes at most 15 characters).
std::string hashlimit_name(const std::string& ip) {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (std::sscanf(ip.c_str(), "%u.%u.%u.%u", &a, &b, &c, &d) != 4) return "mh-rate";
  char buf[16];
  std::snprintf(buf, sizeof buf, "mh%02x%02x%02x%02x", a & 0xffu, b & 0xffu, c & 0xffu, d & 0xffu);
  return buf;
}

}  // namespace

std::string chain_rules(const NamespaceRules& rules) {
  const std::string chain = kChain;
  std::string s;
  for (const PeerRule& r : rules.rules) {
    const std::string match = "-A " + chain + " -s " + r.ip + "/32";
    const Connection& c = r.connection;
    if (c.blocked) {
      s += match + " -j DROP\n";
      continue;
    }
    if (c.rate_bytes_per_second > 0) {
      // Policing: bytes above the rate (burst: one second's worth) are dropped.
      const std::string rate = std::to_string(c.rate_bytes_per_second);
      s += match + " -m hashlimit --hashlimit-above " + rate + "b/s --hashlimit-burst " + rate +
           "b --hashlimit-mode srcip --hashlimit-name " + hashlimit_name(r.ip) + " -j DROP\n";
    }
    if (r.queue >= 0) s += match + " -j NFQUEUE --queue-num " + std::to_string(r.queue) + " --queue-bypass\n";
  }
  return s;
}

std::string render_restore(const NamespaceRules& rules, const Installed& installed) {
  const std::string chain = kChain;
  std::string s = "*filter\n";
  if (rules.rules.empty()) {
    if (!installed.chain && !installed.jump) return {};
    if (installed.jump) s += "-D INPUT -j " + chain + "\n";
    if (installed.chain) s += "-F " + chain + "\n-X " + chain + "\n";
    return s + "COMMIT\n";
  }
  // Declaring the chain creates it, or empties it in the same transaction
  // that fills it again.
  s += ":" + chain + " - [0:0]\n" + chain_rules(rules);
  if (!installed.jump) s += "-I INPUT 1 -j " + chain + "\n";
  return s + "COMMIT\n";
}

}  // namespace modhost::engine::partition
