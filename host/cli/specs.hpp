// The small languages of the command line (specs.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "modhost/result.hpp"
#include "modhost/types.hpp"

namespace modhost::cli {

// Parses "K=V" into key and value; the key must be non-empty.
Result<std::pair<std::string, std::string>> parse_key_value(std::string_view text, std::string_view what);

// "http=80/tcp", "db=5432" (tcp by default), "dns=53/udp".
Result<PortSpec> parse_port_spec(std::string_view text);
// "512m", "1g", "64k", "1048576" (bytes).
Result<std::uint64_t> parse_memory(std::string_view text);
// "tcp:PORT", "http:PORT/path", "exec:COMMAND ARGS..." (split on spaces).
Result<ReadinessCheck> parse_wait_spec(std::string_view text);

}  // namespace modhost::cli
