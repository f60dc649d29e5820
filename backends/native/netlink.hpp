// The few rtnetlink requests the native backend makes: bridges, veth pairs,
// addresses, links moved between network namespaces. Each call opens its own
// NETLINK_ROUTE socket in the caller's current network namespace and waits
// for the kernel's acknowledgement, so every failure comes back with errno.
#pragma once

#include <string>
#include <vector>

#include "modhost/result.hpp"

namespace modhost::backend::native::netlink {

Status create_bridge(const std::string& name);
// A veth pair; with `peer_pid` > 0 the peer is made directly in that
// process's network namespace (moving it there afterwards costs the kernel
// a network-wide synchronisation, tens of milliseconds).
// `peer_mac`: 6 bytes, the peer's address (empty: the kernel picks one).
Status create_veth(const std::string& name, const std::string& peer, int peer_pid = 0,
                   const std::string& peer_mac = {});
// Deletes a link; a link that is not there is not an error.
Status delete_link(const std::string& name);
Status set_up(const std::string& name);
// Down: a veth's peer loses its carrier with it (a link that is not there is
// an error).
Status set_down(const std::string& name);
Status set_master(const std::string& name, const std::string& bridge);
Status rename_link(const std::string& name, const std::string& new_name);
// Moves a link into the network namespace of process `pid`.
Status move_to_netns(const std::string& name, int pid);
// Adds IPv4 address ADDRESS/PREFIX to a link.
Status add_address(const std::string& name, const std::string& address, int prefix);
// Adds a route to DESTINATION/PREFIX via GATEWAY.
Status add_route(const std::string& destination, int prefix, const std::string& gateway);
bool link_exists(const std::string& name);
// A link's alias (ifalias): the native backend's label on links it makes.
Status set_alias(const std::string& name, const std::string& alias);

struct Link {
  std::string name;
  std::string alias;
};
// Every link in this namespace.
Result<std::vector<Link>> list_links();
// Every IPv4 address/prefix configured in this namespace, as "a.b.c.d/n".
Result<std::vector<std::string>> list_addresses();

}  // namespace modhost::backend::native::netlink
