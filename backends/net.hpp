// IPv4 helpers shared by backends and the engine.
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <optional>
#include <string>

namespace modhost::backend {

// A dotted IPv4 address in host byte order, or nullopt.
inline std::optional<std::uint32_t> parse_ipv4(const std::string& ip) {
  in_addr a{};
  if (ip.empty() || ::inet_pton(AF_INET, ip.c_str(), &a) != 1) return std::nullopt;
  return ntohl(a.s_addr);
}

// True only for an address inside CIDR `cidr` (prefix 8 to 32). Anything the
// engine connects to or shapes by address is checked with it first, so an
// empty or foreign address never falls through to the default route.
inline bool ip_in_subnet(const std::string& ip, const std::string& cidr) {
  const auto slash = cidr.find('/');
  if (slash == std::string::npos) return false;
  const auto a = parse_ipv4(ip);
  const auto net = parse_ipv4(cidr.substr(0, slash));
  if (!a || !net) return false;
  int bits = 0;
  for (size_t i = slash + 1; i < cidr.size(); ++i) {
    if (cidr[i] < '0' || cidr[i] > '9' || bits > 32) return false;
    bits = bits * 10 + (cidr[i] - '0');
  }
  if (slash + 1 == cidr.size() || bits < 8 || bits > 32) return false;
  const std::uint32_t mask = bits == 32 ? 0xffffffffu : ~(0xffffffffu >> bits);
  return (*a & mask) == (*net & mask);
}

}  // namespace modhost::backend
