// The out-of-process handshake between the host and a module child: one line
// on the child's stdout, CORE|API|NETWORK|ADDRESS|PROTOCOL.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "modhost/result.hpp"

namespace modhost::engine {

inline constexpr int kHandshakeCoreVersion = 1;
// Module API versions this host speaks, newest last.
inline constexpr int kModuleApiVersions[] = {1};

// Set by the host; a child started without it explains itself and exits.
inline constexpr const char* kMagicCookieKey = "MODHOST_PLUGIN_MAGIC_COOKIE";
inline constexpr const char* kMagicCookieValue = "d8c1c3f06a7e4b8e9b1f2a5c0e7d4a61";
// Comma-separated module API versions the host accepts.
inline constexpr const char* kApiVersionsKey = "MODHOST_PLUGIN_API_VERSIONS";
// The host's pid: the child exits if its parent is already another process.
inline constexpr const char* kParentPidKey = "MODHOST_PLUGIN_PARENT_PID";
// The load params for the module.
inline constexpr const char* kLoadParamsKey = "MODHOST_LOAD_PARAMS";

struct Handshake {
  int core_version = 0;
  int api_version = 0;
  std::string network;  // "unix" or "tcp"
  std::string address;
  std::string protocol;  // "grpc"
};

std::string format_handshake(const Handshake& h);
Result<Handshake> parse_handshake(std::string_view line);

// The newest version present in both lists, or 0.
int negotiate_api_version(std::string_view offered_csv, const std::vector<int>& supported);

}  // namespace modhost::engine
